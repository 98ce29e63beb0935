"""The command line's shape: help, unknown commands, exit codes."""


def test_help_lists_subcommands(run_cli):
    result = run_cli("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout


def test_unknown_subcommand_is_a_usage_error(run_cli):
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert result.stderr.count("\n") == 1


def test_no_subcommand_prints_help_and_fails(run_cli):
    result = run_cli()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr


def test_package_imports_without_bpy(run_cli):
    import subprocess
    import sys

    code = ("import sys; sys.modules['bpy'] = None\n"
            "import blender_zdepth, blender_zdepth.core, blender_zdepth.cli\n"
            "print(blender_zdepth.__version__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=__import__('os').path.dirname(__file__) + "/..")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_a_subcommand_imports_only_its_own_module():
    """``python -m blender_zdepth dof ...`` imports the dof command (and what it uses), not the
    other commands: start-up time is part of every frame a farm task refocuses."""
    import os
    import subprocess
    import sys

    code = ("import sys\n"
            "from blender_zdepth import cli\n"
            "code = cli.main(['dof', 'no_such_input.exr', 'out.exr', '--fstop', '2'])\n"
            "print('RUN', code, sorted(m for m in sys.modules if m.startswith('blender_zdepth.commands.')))\n"
            "cli.build_parser()\n"
            "print('ALL', sorted(m for m in sys.modules if m.startswith('blender_zdepth.commands.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first = next(line for line in lines if line.startswith("RUN "))[4:]
    every = next(line for line in lines if line.startswith("ALL "))
    assert first.split(" ", 1)[0] in ("1", "2")  # the missing input is reported, not a crash
    assert "'blender_zdepth.commands.dof'" in first
    for other in ("decode", "demo", "farm", "inspect", "render"):
        assert f"'blender_zdepth.commands.{other}'" not in first, first
        assert f"'blender_zdepth.commands.{other}'" in every, every  # --help's parser: all


def test_options_before_the_subcommand_and_misspelt_names_use_the_full_parser(run_cli):
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("blender_zdepth ")
    for name in ("dofx", "_helpers", "dof.py"):
        result = run_cli(name, "a.exr")
        assert result.returncode == 2, (name, result.stderr)
        assert "invalid choice" in result.stderr and "'inspect'" in result.stderr
