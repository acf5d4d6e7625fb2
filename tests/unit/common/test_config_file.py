"""config_file.py: JSON/HCL parsing and python-hcl2's output normalised to JSON's shape."""

from __future__ import annotations

import pytest

from lictor.common.config_file import list_config_dir, load_file, normalise_hcl, parse_text
from lictor.common.errors import ConfigError


def test_hcl_blocks_become_objects_and_strings_lose_quotes() -> None:
    data = parse_text(
        """
        datacenter = "dc2"   # comment
        ports {
          http = 8501
        }
        node_meta = { "rack-1" = "a", plain = 2 }
        retry_join = ["10.0.0.1", "10.0.0.2"]
        service {
          name = "web"
          check { http = "http://localhost/health" }
          connect { sidecar_service {} }
        }
        """,
        "a.hcl",
        "hcl",
    )
    assert data == {
        "datacenter": "dc2",
        "ports": {"http": 8501},
        "node_meta": {"rack-1": "a", "plain": 2},
        "retry_join": ["10.0.0.1", "10.0.0.2"],
        "service": {"name": "web", "check": {"http": "http://localhost/health"},
                    "connect": {"sidecar_service": {}}},
    }


def test_hcl_repeated_blocks_stay_a_list_and_plural_keys_always_are() -> None:
    data = parse_text('service { name = "a" }\nservice { name = "b" }\nchecks { name = "c" }', "x.hcl", "hcl")
    assert data == {"service": [{"name": "a"}, {"name": "b"}], "checks": [{"name": "c"}]}


def test_hcl_escapes_and_heredocs() -> None:
    data = parse_text('a = "say \\"hi\\"\\n"\nb = <<EOF\nline\nEOF\n', "x.hcl", "hcl")
    assert data == {"a": 'say "hi"\n', "b": "line"}


def test_normalise_keeps_plain_lists() -> None:
    assert normalise_hcl({"x": [{"a": 1}], "y": [1, 2]}) == {"x": [{"a": 1}], "y": [1, 2]}


def test_malformed_json_names_file_and_line(tmp_path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{\n  "datacenter": "dc1",\n  "ports": {\n}')
    with pytest.raises(ConfigError) as e:
        load_file(str(p))
    assert str(e.value).startswith(f"{p}: line 4, column 2: invalid JSON:")


def test_malformed_hcl_names_file_and_line(tmp_path) -> None:
    p = tmp_path / "bad.hcl"
    p.write_text('datacenter = "dc1"\nports {\n  http = \n}\n')
    with pytest.raises(ConfigError) as e:
        load_file(str(p))
    assert str(e.value).startswith(f"{p}: line 3, column 10: invalid HCL: ")
    assert "invalid HCL" in str(e.value)


def test_json_top_level_must_be_an_object(tmp_path) -> None:
    p = tmp_path / "list.json"
    p.write_text("[1]")
    with pytest.raises(ConfigError, match="expected a JSON object at the top level"):
        load_file(str(p))


def test_unknown_extension_and_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"a\.yaml: invalid config format"):
        load_file(str(tmp_path / "a.yaml"))
    with pytest.raises(ConfigError, match=r"nope\.json: no such file"):
        load_file(str(tmp_path / "nope.json"))


def test_list_config_dir_is_lexical_and_skips_subdirs(tmp_path) -> None:
    for name in ("b.hcl", "a.json", "c.txt"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub.json").mkdir()
    assert [(p.rsplit("/", 1)[1], ok) for p, ok in list_config_dir(str(tmp_path))] == [
        ("a.json", True), ("b.hcl", True), ("c.txt", False)]
    with pytest.raises(ConfigError, match="no such directory"):
        list(list_config_dir(str(tmp_path / "missing")))
