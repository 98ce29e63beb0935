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
