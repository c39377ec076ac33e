"""paphosting.pillarcompile: every minion's pillar as Salt's own compile gives it; with the
masters' options (conf/master.d/paphosting.conf, its ``render_dirs``: _renderers/yaml.py) each
distinct YAML text is parsed once."""

import salt.config
import salt.pillar
import salt.renderers.yaml

from harness.saltenv import master_config
from paphosting import pillarcompile

TOP = """\
base:
  '*':
    - common
    - mine
  'lb*':
    - lbonly
"""
# Plain YAML, the same text for every minion: parsed once.
COMMON = "common:\n" + "".join(f"  key{i}: {{value: {i}, list: [a, b]}}\n" for i in range(200))
# Jinja that differs per minion: a text of its own, a parse of its own.
MINE = "mine:\n  id: {{ grains['id'] }}\n  role: {{ grains.get('role', 'none') }}\n"
LBONLY = "lbonly: true\n"
MINIONS = ["lb1", "lb2", "ns1"]
GRAINS = {"lb1": {"role": "balancer"}, "lb2": {}, "ns1": {"role": "dns"}}


def _opts(tmp_path, shipped=True):
    """A master's options: with the project's master configuration (``shipped``), or Salt's
    defaults (the reference: Salt's own yaml renderer)."""
    opts = salt.config.master_config("/dev/null")
    if shipped:
        opts.update({k: v for k, v in master_config().items() if k.endswith("_dirs")})
    opts.update(cachedir=str(tmp_path / "cache"), pki_dir=str(tmp_path / "pki"), ext_pillar=[])
    return opts


def _tree(tmp_path, **files):
    tree = tmp_path / "tree"
    tree.mkdir()
    for name, text in {
        "top": TOP,
        "common": COMMON,
        "mine": MINE,
        "lbonly": LBONLY,
        **files,
    }.items():
        (tree / f"{name}.sls").write_text(text)
    return tree


def _salt_compile(tmp_path, tree, minion):
    """The same minion's pillar from a plain ``salt.pillar.Pillar`` with Salt's own renderers:
    the reference."""
    opts = dict(_opts(tmp_path, shipped=False), pillar_roots={"base": [str(tree)]})
    opts["pillar_cache"] = False
    grains = dict(GRAINS[minion], id=minion)
    pillar = salt.pillar.Pillar(opts, grains, minion, "base")
    try:
        return dict(pillar.compile_pillar())
    finally:
        pillar.destroy()


def test_every_minion_gets_what_salt_compiles_for_it(tmp_path, monkeypatch):
    opts = _opts(tmp_path)
    tree = _tree(tmp_path)
    parses = []
    real = salt.renderers.yaml.render

    def counted(data, *args, **kwargs):
        # What _renderers/yaml.py calls when it has not seen the text: a real parse.
        parses.append(data)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(salt.renderers.yaml, "render", counted)
    compiled, sources, files, lines = pillarcompile.compile_tree(
        opts, str(tree), "pillar", MINIONS, grains_of=GRAINS.get
    )
    assert sorted(compiled) == MINIONS
    for minion in MINIONS:
        got = compiled[minion]
        assert got.errors == []
        assert got.pillar == _salt_compile(tmp_path, tree, minion)
    assert compiled["lb1"].pillar["mine"] == {"id": "lb1", "role": "balancer"}
    assert compiled["ns1"].pillar["mine"] == {"id": "ns1", "role": "dns"}
    assert "lbonly" not in compiled["ns1"].pillar
    # Each file once on its own (the master's id for the Jinja one), then per minion only the
    # texts not seen before: top and common are parsed once; mine once per distinct rendering.
    distinct = {TOP, COMMON, LBONLY} | {
        MINE.replace("{{ grains['id'] }}", m).replace(
            "{{ grains.get('role', 'none') }}", GRAINS[m].get("role", "none")
        )
        for m in MINIONS
    }
    assert 0 < len(parses) <= len(distinct) + 1  # + the master's own rendering of mine.sls
    assert parses.count(COMMON) == 1
    assert sorted(sources) == [f"pillar/{n}.sls" for n in ("common", "lbonly", "mine", "top")]
    assert files and lines == {}


def test_a_minion_changing_its_pillar_does_not_change_another(tmp_path):
    compiled, *_ = pillarcompile.compile_tree(
        _opts(tmp_path), str(_tree(tmp_path)), "", MINIONS, grains_of=GRAINS.get
    )
    compiled["lb1"].pillar["common"]["key0"]["list"].append("changed")
    assert compiled["lb2"].pillar["common"]["key0"]["list"] == ["a", "b"]
    assert compiled["ns1"].pillar["common"]["key0"]["list"] == ["a", "b"]


def test_a_render_error_is_reported_for_every_minion_with_its_line(tmp_path):
    tree = _tree(tmp_path, common="common:\n  ok: 1\n  bad: @reserved\n")
    compiled, _sources, _files, lines = pillarcompile.compile_tree(
        _opts(tmp_path), str(tree), "pillar", MINIONS, grains_of=GRAINS.get
    )
    for minion in MINIONS:
        assert compiled[minion].errors, minion
        assert any("common" in e for e in compiled[minion].errors)
    assert lines == {"common.sls": 3}


def test_servers_the_pillar_names_are_compiled_too(tmp_path):
    tree = _tree(
        tmp_path,
        common="paphosting:\n  loadbalancers:\n    lb9: {address: 127.0.0.9}\n",
    )
    compiled, *_ = pillarcompile.compile_tree(_opts(tmp_path), str(tree), "", ["ns1"])
    assert sorted(compiled) == ["lb9", "ns1"]
    assert compiled["lb9"].pillar["lbonly"] is True
