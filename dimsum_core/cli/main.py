"""The ``dimsum`` command. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import sys

import click

from dimsum_core.errors import DimsumError, compile_problem, os_problem


class UserError(click.ClickException):
    """A problem the user can fix: printed as one line, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"error: {self.format_message()}", err=True)


class DimsumGroup(click.Group):
    """Turns :class:`DimsumError` (and a failed torch.compile) from any command into a one-line message."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except DimsumError as exc:
            error = UserError(str(exc))
            error.exit_code = exc.exit_code
            raise error from None
        except OSError as exc:  # a file a command writes or reads, where no closer handler names it
            where = f"{exc.filename}: " if exc.filename else ""
            raise UserError(f"{where}{os_problem(exc)}") from None
        except RuntimeError as exc:  # torch.compile's errors are RuntimeErrors; any other goes on as it is
            if (problem := compile_problem(exc)) is None:
                raise
            raise UserError(problem) from None


@click.group(cls=DimsumGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dimsum")
def cli() -> None:
    """DiMSUM-style image diffusion: train, sample and evaluate hybrid Mamba/Transformer models.

    \b
    Examples:
      dimsum run quickstart                 train the small CPU recipe
      dimsum validate recipes/quickstart.yaml train.steps=10
      dimsum list-plugins --kind scan
      dimsum doctor
    """


def _register_commands() -> None:
    from dimsum_core.cli import (
        bench,
        convert_official,
        doctor,
        export_data,
        info,
        list_plugins,
        prepare_latents,
        run,
        show_scan,
    )
    from dimsum_core.cli import eval as eval_cli
    from dimsum_core.cli import sample as sample_cli

    for command in (run.run, run.validate, list_plugins.list_plugins, doctor.doctor, info.info,
                    show_scan.show_scan, convert_official.convert_official,
                    prepare_latents.prepare_latents_command, sample_cli.sample, eval_cli.eval_command,
                    export_data.export_data, bench.bench):
        cli.add_command(command)


_register_commands()


def main() -> None:
    sys.exit(cli.main(prog_name="dimsum", standalone_mode=True))


if __name__ == "__main__":  # torchrun -m dimsum_core.cli.main run RECIPE
    main()
