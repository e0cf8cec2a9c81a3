"""README.md lists every registered block: its blocks section is the generated table, verbatim."""

from pathlib import Path

from mixerlab.bench.listing import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_block_tables_are_current():
    text = README.read_text()
    section = text[text.index("<!-- blocks:start -->") : text.index("<!-- blocks:end -->")]
    assert markdown_table() in section, "run: mixerlab list --update-readme README.md"


def test_every_token_mixer_documents_its_costs():
    import mixerlab
    from mixerlab.registry import TOKEN_MIXERS

    for name in mixerlab.list_token_mixers():
        meta = TOKEN_MIXERS.entry(name).meta
        missing = [k for k in ("state", "time", "memory", "state_kind") if not meta.get(k)]
        assert not missing, f"{name}: register meta with {missing}"
        assert meta["state_kind"] in {"fixed", "growing", "logarithmic"}  # log-linear: O(log T)
