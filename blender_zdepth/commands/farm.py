"""``farm``: files for render farms.

    python -m blender_zdepth farm flamenco --out DIR [--overwrite]

writes the Flamenco 3 job type "Render with Z-Depth + Refocus" (``zdepth_render_refocus.js``)
into DIR -- a Flamenco Manager's ``scripts/`` folder -- so a TD can install it without unzipping
the extension. The file is written atomically; an existing different file is never replaced
without ``--overwrite`` (an identical one is left as it is). See docs/farm.md.
"""

import os

NAME = "farm"
HELP = "write render-farm files: the Flamenco 3 job type (render depth + refocus in chunks)"


def add_arguments(parser):
    targets = parser.add_subparsers(dest="farm_target", metavar="TARGET",
                                    parser_class=type(parser))
    p = targets.add_parser(
        "flamenco", help="write the Flamenco 3 job type file zdepth_render_refocus.js",
        description="Write the Flamenco 3 job type 'Render with Z-Depth + Refocus' "
                    "(zdepth_render_refocus.js) into DIR, e.g. the scripts/ folder next to "
                    "flamenco-manager; restart the Manager to load it.")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write into (created when missing), e.g. the Manager's scripts/")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing, different zdepth_render_refocus.js")


def run(args):
    from ..core.errors import UsageError

    if args.farm_target != "flamenco":
        raise UsageError("say what to write: 'farm flamenco --out DIR' (the Flamenco 3 job type)")
    return _write_flamenco(args.out, args.overwrite)


def _write_flamenco(out, overwrite):
    from ..core.atomic import atomic_target
    from ..core.errors import ZDepthError
    from ..farm import FLAMENCO_JOB_TYPE, flamenco_job_type_bytes

    folder = os.path.abspath(out)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ZDepthError(f"{folder}: exists and is not a folder; --out takes a folder "
                          f"(the Manager's scripts/)")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ZDepthError(f"{folder}: cannot create this folder ({exc.strerror})")
    data = flamenco_job_type_bytes()
    target = os.path.join(folder, os.path.basename(FLAMENCO_JOB_TYPE))
    if os.path.isfile(target):
        with open(target, "rb") as f:
            same = f.read() == data
        if same:
            print(f"{target}: already there and identical; nothing to do")
            return 0
        if not overwrite:
            raise ZDepthError(f"{target}: already exists and differs (another version?); pass "
                              f"--overwrite to replace it")
    with atomic_target(target, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    print(f"wrote {target}")
    print("job type 'Render with Z-Depth + Refocus' (zdepth-render-refocus): restart the Flamenco "
          "Manager, then in Blender press the Flamenco add-on's refresh button to see it "
          "(docs/farm.md)")
    return 0
