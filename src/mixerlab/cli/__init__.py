"""The command line: thin wrappers that parse arguments and call bench/ and train/."""
