"""Each setting is declared once: its flag, default, help and check are generated from it."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, cast

import pytest

from apiservice import settings as flags
from apiservice.errors import ConfigError
from apiservice.settings import Settings

NOT_FLAGS = {"always_allow_groups", "prometheus"}  # a fixed policy; flags of their own


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser()
    flags.add_flags(made)
    return made


def declared() -> list[flags.Flag]:
    found = [flag for group in Settings().groups() for _, flag in flags.flags_of(type(group))]
    return found + [flag for _, flag, _ in flags._prometheus_flags()]


def test_no_flags_give_the_declared_defaults() -> None:
    assert flags.from_args(parser().parse_args([])) == Settings()


def test_every_setting_has_one_flag_and_every_flag_one_setting() -> None:
    for group in Settings().groups():
        with_flags = {field.name for field, _ in flags.flags_of(type(group))}
        every = {field.name for field in dataclasses.fields(cast(Any, group))} - NOT_FLAGS
        assert with_flags == every, type(group).__name__
    names = [flag.name for flag in declared()]
    assert len(names) == len(set(names))
    assert all(flag.help for flag in declared())


@pytest.mark.parametrize("flag", declared(), ids=lambda flag: flag.name)
def test_the_default_shown_in_help_is_the_default(flag: flags.Flag) -> None:
    if flag.parse is None or flag.shown is None or flag.shown == "none":
        return
    given = flags.from_args(parser().parse_args([flag.name, flag.shown]))
    assert given == Settings()


def test_a_bad_value_is_named_by_its_flag_with_the_others() -> None:
    given = flags.from_args(
        parser().parse_args(
            [
                "--secure-port=70000",
                "--idle-connection-timeout=0s",
                "--authorization-always-allow-paths=healthz",
                "--query-concurrency=0",
            ]
        )
    )
    given = dataclasses.replace(given, logs=dataclasses.replace(given.logs, level="loud"))
    with pytest.raises(ConfigError) as refused:
        given.validate()
    problems = refused.value.problems
    for expected in (
        "--secure-port: 70000 is not a port number",
        "--idle-connection-timeout: must be positive",
        "--authorization-always-allow-paths: 'healthz' must start with '/'",
        "--query-concurrency: must be at least 1",
        "--log-level: 'loud' is not one of debug, info, warning, error",
    ):
        assert expected in problems


def test_local_takes_only_its_flags_over_its_own_settings() -> None:
    made = argparse.ArgumentParser()
    flags.add_flags(made, only=flags.CONNECTION_FLAGS)
    base = dataclasses.replace(
        Settings(), provider=dataclasses.replace(Settings().provider, refresh_interval=5.0)
    )
    given = flags.from_args(made.parse_args(["--max-connections=7"]), base, flags.CONNECTION_FLAGS)
    assert given.serving.max_connections == 7
    assert given.provider.refresh_interval == 5.0
    with pytest.raises(SystemExit):
        made.parse_args(["--config=x.yaml"])
