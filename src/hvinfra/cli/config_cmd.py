"""`hvinfra config show|validate`."""

from __future__ import annotations

from pathlib import Path

import typer

from hvinfra.cli.common import TARGET_HELP, JsonOpt, ProfileFileOpt, SetOpt


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Show and check profiles.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @config_app.command("show")
    def show(
        target: str = typer.Argument(..., help=TARGET_HELP),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        as_json: bool = JsonOpt,
        sources: bool = typer.Option(False, "--sources", help="Show the layer of each value."),
    ) -> None:
        """Print the merged profile (all layers applied), as YAML or JSON."""
        import yaml

        from hvinfra.cli.common import load
        from hvinfra.output import Output

        loaded = load(target, profile_file, sets)
        data = loaded.profile.model_dump(mode="json")
        output = Output(json_mode=as_json)
        if as_json:
            output.data({"profile": data, "sources": loaded.sources} if sources else data)
            return
        output.line(yaml.safe_dump(data, sort_keys=False).rstrip())
        if sources:
            output.line("\n# sources (highest layer that set each key)")
            for key, label in sorted(loaded.sources.items()):
                output.line(f"# {key}: {label}")

    @config_app.command("validate")
    def validate(
        file: Path = typer.Argument(..., help="A profile YAML file.", dir_okay=False),
        as_json: bool = JsonOpt,
    ) -> None:
        """Check a profile file: YAML syntax, keys, types and values."""
        from hvinfra.output import Output
        from hvinfra.profiles import load_profile_file

        loaded = load_profile_file(file)
        output = Output(json_mode=as_json)
        if as_json:
            output.data({"file": str(file), "valid": True, "name": loaded.profile.name})
        else:
            output.out.print(f"[green]ok[/green] {file}: valid profile {loaded.profile.name!r}")
