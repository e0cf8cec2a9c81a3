"""Train the prior-fitted network (PFN, arXiv:2112.10510) on synthetic tables and save its weights.

Usage: python scripts/train_pfn.py --out pfn.pt [--steps 4000] [--max-seconds 540]
The saved file is ``{"config", "state_dict"}`` (``torch.save``), read back with
``mixerlab.models.pfn.load_pfn`` (``weights_only=True``); the ``pfn`` baseline takes its path.
Under 10 minutes on 2 CPU cores at the defaults (training stops at ``--max-seconds``).
"""

import torch

from mixerlab.models.pfn import main

if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
