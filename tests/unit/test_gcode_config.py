"""printers.yml: link-sync's files accepted as is, every problem reported once, no secret ever echoed."""

from __future__ import annotations

import json

import pytest

from farmsync.errors import ConfigError, InputError
from farmsync.gcode.backends.base import Kind
from farmsync.gcode.config import kind_for_type, load_printers, parse_printers, select_printers

LINK_SYNC_YAML = """\
Ash:
    printer_type: MK4
    host: http://127.0.0.1:8101
    username: maker
    password: password1
Bishop:
    printer_type: MK4
    host: http://127.0.0.1:8102
    username: maker
    password: password2
"""


def problems(data, label="printers.yml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_printers(data, label=label)
    return info.value.problems


def entry(**overrides):
    base = {
        "printer_type": "MK4",
        "host": "http://127.0.0.1:8101",
        "username": "maker",
        "password": "s3cret-pw",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_link_sync_yaml_is_accepted_as_is(tmp_path):
    path = tmp_path / "printers.yml"
    path.write_text(LINK_SYNC_YAML)
    ash, bishop = load_printers(path)
    assert (ash.name, ash.kind, ash.host, ash.username) == (
        "Ash",
        Kind.PRUSALINK,
        "http://127.0.0.1:8101",
        "maker",
    )
    assert ash.password is not None and ash.password.get_secret_value() == "password1"
    assert "password1" not in repr(ash)
    assert bishop.name == "Bishop"


@pytest.mark.parametrize("suffix", [".json", ".jsn", ".jso"])
def test_json_by_suffix(tmp_path, suffix):
    path = tmp_path / f"printers{suffix}"
    path.write_text(json.dumps({"Ash": entry()}))
    assert [p.name for p in load_printers(path)] == ["Ash"]


def test_yaml_suffix_yaml_and_numeric_password(tmp_path):
    path = tmp_path / "farm.yaml"
    path.write_text(
        "Ash: {printer_type: MK4, host: 'http://127.0.0.1:8101', username: maker, password: 12345678}\n"
    )
    [ash] = load_printers(path)
    assert ash.password is not None and ash.password.get_secret_value() == "12345678"


def test_optional_farmsync_keys(tmp_path):
    [p] = parse_printers(
        {
            "Voron": {
                "printer_type": "Voron 2.4",
                "kind": "moonraker",
                "host": "http://127.0.0.1:7125/",
                "api_key": "k",
                "storage": "gcodes",
                "destination": "/gcodes/farm",
            }
        }
    )
    assert (p.kind, p.host, p.storage, p.destination) == (
        Kind.MOONRAKER,
        "http://127.0.0.1:7125",
        "gcodes",
        "/gcodes/farm",
    )


@pytest.mark.parametrize(
    ("printer_type", "kind"),
    [
        ("MK4", Kind.PRUSALINK),
        ("mk4s", Kind.PRUSALINK),
        ("MK3.9", Kind.PRUSALINK),
        ("MK3.5", Kind.PRUSALINK),
        ("XL", Kind.PRUSALINK),
        ("MINI", Kind.PRUSALINK),
        ("COREONE", Kind.PRUSALINK),
        ("CORE One", Kind.PRUSALINK),
        ("MK3", Kind.PRUSALINK_LEGACY),
        ("MK3S", Kind.PRUSALINK_LEGACY),
        ("MK3S+", Kind.PRUSALINK_LEGACY),
        ("OctoPrint", Kind.OCTOPRINT),
        ("Klipper", Kind.MOONRAKER),
        ("Moonraker", Kind.MOONRAKER),
        ("Voron", Kind.MOONRAKER),
        ("Ender 3", None),
    ],
)
def test_kind_inference(printer_type, kind):
    assert kind_for_type(printer_type) is kind


def test_explicit_kind_overrides_printer_type():
    [p] = parse_printers({"Box": entry(printer_type="Ender 3", kind="octoprint", api_key="abc")})
    assert p.kind is Kind.OCTOPRINT


def test_unknown_printer_type_names_the_printer():
    assert problems({"Ash": entry(printer_type="Ender 3")}) == [
        "printers.yml: printer 'Ash': key 'printer_type': unknown printer type 'Ender 3'; "
        "set 'kind' to one of prusalink, prusalink-legacy, octoprint, moonraker, bambu"
    ]


def test_bad_host_message_format():
    assert problems({"Ash": entry(host="ftp://127.0.0.1")}) == [
        "printers.yml: printer 'Ash': key 'host': expected an http(s) URL, got 'ftp://127.0.0.1'"
    ]


@pytest.mark.parametrize("host", ["127.0.0.1", "http://", "http://127.0.0.1:99999", "http://h/?apikey=x"])
def test_bad_hosts(host):
    [line] = problems({"Ash": entry(host=host)})
    assert line.startswith("printers.yml: printer 'Ash': key 'host': expected an http(s) URL")


def test_credentials_in_host_are_masked():
    [line] = problems({"Ash": entry(host="http://maker:hunter2@127.0.0.1")})
    assert "hunter2" not in line and "***@127.0.0.1" in line
    [line] = problems({"Ash": entry(host="http://127.0.0.1/?apikey=hunter2")})
    assert "hunter2" not in line and "'http://127.0.0.1/?***'" in line


def test_every_problem_is_listed_and_no_secret_is_echoed():
    data = {
        "Ash": entry(hots="http://127.0.0.1", host=None, password="hunter2-secret"),
        "Bishop": entry(kind="prusa", password="another-secret"),
        "Call": entry(password=None),
        "David": "not a mapping",
        "Ellen": entry(password=["hunter2-secret"]),
        "ash": entry(),
    }
    lines = problems(data)
    text = "\n".join(lines)
    assert "hunter2" not in text and "another-secret" not in text
    assert "printers.yml: printer 'Ash': key 'host': required key is missing" in lines
    assert "printers.yml: printer 'Ash': key 'hots': unknown key; did you mean 'host'?" in lines
    assert any(
        line.startswith("printers.yml: printer 'Bishop': key 'kind': expected one of prusalink")
        for line in lines
    )
    assert (
        "printers.yml: printer 'Call': key 'password': required for kind prusalink (or set 'api_key')"
        in lines
    )
    assert "printers.yml: printer 'David': expected a mapping of settings, got str" in lines
    assert "printers.yml: printer 'Ellen': key 'password': expected text, got list" in lines
    assert "printers.yml: printer 'ash': same name as 'Ash' (names are case-insensitive)" in lines
    assert len(lines) == 7


def test_moonraker_needs_no_credentials():
    [p] = parse_printers({"K": {"printer_type": "Klipper", "host": "http://127.0.0.1:7125"}})
    assert p.password is None and p.api_key is None


def test_printer_destination_is_checked_for_traversal():
    [line] = problems({"Ash": entry(destination="/usb/../etc")})
    assert line.startswith("printers.yml: printer 'Ash': key 'destination': expected a folder path")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "got nothing"),
        ("- a\n- b\n", "got list"),
        ("{}", "no printers defined"),
        ("Ash: [unclosed\n", "not valid YAML (line"),
        ("Ash: {host: a}\nAsh: {host: b}\n", "duplicate key 'Ash'"),
    ],
)
def test_file_level_problems(tmp_path, text, fragment):
    path = tmp_path / "printers.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_printers(path)
    [line] = info.value.problems
    assert line.startswith(f"{path}: ") and fragment in line


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_printers(tmp_path / "printers.yml")
    other = tmp_path / "printers.toml"
    other.write_text("x")
    with pytest.raises(ConfigError, match=r"expected a \.yml"):
        load_printers(other)


def test_json_duplicate_keys(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"Ash": {}, "Ash": {}}')
    with pytest.raises(ConfigError, match="duplicate key 'Ash'"):
        load_printers(path)


# --- -p / -x ----------------------------------------------------------------------------------------------


@pytest.fixture
def farm():
    return parse_printers({name: entry() for name in ("Ash", "Bishop", "Call", "David")})


def names(printers) -> list[str]:
    return [p.name for p in printers]


def test_select_all_by_default(farm):
    selection = select_printers(farm)
    assert names(selection.selected) == ["Ash", "Bishop", "Call", "David"] and selection.excluded == ()


def test_select_include_case_insensitive(farm):
    selection = select_printers(farm, include=["bishop", "ASH"])
    assert names(selection.selected) == ["Ash", "Bishop"]
    assert names(selection.excluded) == ["Call", "David"]


def test_select_exclude(farm):
    assert names(select_printers(farm, exclude=["call"]).selected) == ["Ash", "Bishop", "David"]


def test_exclude_ignored_with_include(farm):
    selection = select_printers(farm, include=["Ash"], exclude=["Ash"])
    assert names(selection.selected) == ["Ash"]
    assert selection.notes and "ignored" in selection.notes[0]


@pytest.mark.parametrize(("include", "exclude"), [(["Ahs"], []), ([], ["Cal"])])
def test_unknown_names_are_usage_errors(farm, include, exclude):
    with pytest.raises(InputError, match="no printer named") as info:
        select_printers(farm, include=include, exclude=exclude)
    assert "known: Ash, Bishop, Call, David" in str(info.value)


def test_printers_files_are_parsed_by_libyaml_and_both_loaders_refuse_duplicate_keys():
    import yaml

    from farmsync.gcode import config

    assert issubclass(config._LOADER, yaml.CSafeLoader)  # the pinned PyYAML wheel carries libyaml
    for loader in (config._LOADER, config._UniqueKeyLoader):
        with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'Ash'"):
            yaml.load("Ash: {host: a}\nAsh: {host: b}\n", Loader=loader)  # noqa: S506 - SafeLoader subclasses
        assert yaml.load("Ash: {host: a}\n", Loader=loader) == {"Ash": {"host": "a"}}  # noqa: S506
