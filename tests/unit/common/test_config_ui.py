"""ui_config { enabled, dir, content_path } as Consul reads them."""

from __future__ import annotations

import pytest

from lictor.common.config import ConfigSource, load_config
from lictor.common.errors import ConfigError


def load(tmp_path, hcl: str = "", dev: bool = False):
    flags = {} if dev else {"data_dir": str(tmp_path / "data")}
    return load_config(ConfigSource(dev=dev, flags=flags, hcl=(hcl,) if hcl else ())).config


def test_defaults_and_content_path_normalised(tmp_path) -> None:
    c = load(tmp_path)
    assert (c.ui_enabled, c.ui_dir, c.ui_content_path) == (False, "", "/ui/")
    assert load(tmp_path, dev=True).ui_enabled is True
    assert load(tmp_path, 'ui_config { content_path = "consul/ui" }').ui_content_path == "/consul/ui/"
    assert load(tmp_path, 'ui_config { content_path = "/dash/" }').ui_content_path == "/dash/"


@pytest.mark.parametrize("bad", ["/", "/v1/ui", "/a b/", "/../x", "/x?y"])
def test_content_path_refused(tmp_path, bad: str) -> None:
    with pytest.raises(ConfigError, match="ui_config.content_path"):
        load(tmp_path, f'ui_config {{ content_path = "{bad}" }}')


def test_dir_enables_the_ui_and_excludes_enabled(tmp_path) -> None:
    d = tmp_path / "assets"
    d.mkdir()
    c = load(tmp_path, f'ui_config {{ dir = "{d}" }}')
    assert c.ui_enabled is True and c.ui_dir == str(d)
    with pytest.raises(ConfigError, match="Both the ui_config.enabled and ui_config.dir"):
        load(tmp_path, f'ui_config {{ enabled = true dir = "{d}" }}')
    assert load(tmp_path, f'ui_config {{ dir = "{d}" }}', dev=True).ui_dir == str(d)  # -dev enables the UI itself
    with pytest.raises(ConfigError, match="is not a directory"):
        load(tmp_path, f'ui_config {{ dir = "{tmp_path / "missing"}" }}')
