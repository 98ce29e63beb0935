// SPDX-License-Identifier: GPL-3.0-or-later
//
// blender_zdepth: Flamenco 3 job type "Render with Z-Depth + Refocus".
//
// Renders a .blend in chunks with blender_zdepth's `render` command (one depth EXR per frame,
// beauty included) and, after each chunk, refocuses its frames with the `dof` command (depth
// of field after the render). Both run in the worker's Blender through the installed
// blender_zdepth extension's cli.py.
//
// Install: put this file in the `scripts/` folder next to the flamenco-manager executable
// (`python -m blender_zdepth farm flamenco --out <that folder>` writes it) and restart the
// Manager. The job type is called "zdepth-render-refocus" (after the file name).
// Manual: docs/farm.md of blender_zdepth.

const ZDEPTH_ENCODINGS = ['log', 'linear', 'normalized', 'inverse'];
const ZDEPTH_REFOCUS_MODES = ['off', 'camera', 'keys'];
const ZDEPTH_LAYER_MODES = ['auto', 'peel', 'slabs'];

const JOB_TYPE = {
  label: 'Render with Z-Depth + Refocus',
  description:
    'Render depth EXRs with blender_zdepth in chunks, then refocus each chunk after the render',
  settings: [
    // What to render.
    {
      key: 'frames',
      type: 'string',
      required: true,
      eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'",
      evalInfo: { showLinkButton: true, description: 'Scene frame range' },
      description: "Frames to render. Examples: '47', '1-30', '3, 5-10, 47-327'",
    },
    {
      key: 'chunk_size',
      type: 'int32',
      default: 10,
      propargs: { min: 1 },
      visible: 'submission',
      description: 'Frames per task: each chunk is one render task and one refocus task',
    },

    // Where the output goes: <root>/<last N folders of the .blend>/<job name>/<timestamp>/
    // with depth/ and refocus/ inside (the convention of Flamenco's own job types).
    {
      key: 'render_output_root',
      type: 'string',
      subtype: 'dir_path',
      required: true,
      visible: 'submission',
      description:
        'Base folder of the output; the job adds its own folders (job name, time of submission)',
    },
    {
      key: 'add_path_components',
      type: 'int32',
      required: true,
      default: 0,
      propargs: { min: 0, max: 32 },
      visible: 'submission',
      description: 'Number of folders of the .blend path to repeat in the output path',
    },
    {
      key: 'render_output_path',
      type: 'string',
      subtype: 'dir_path',
      editable: false,
      eval:
        "str(Path(bpy.path.abspath(settings.render_output_root), " +
        "last_n_dir_parts(settings.add_path_components), jobname, '{timestamp}'))",
      description: 'Output folder of this job: depth/ and refocus/ are written inside it',
    },

    // The depth export.
    {
      key: 'depth_encoding',
      label: 'Depth Encoding',
      type: 'string',
      choices: ZDEPTH_ENCODINGS,
      // No default: a default would be the value, and this eval (the .blend's own Z-Depth
      // setting) would never run. Left empty, the render uses the .blend's setting anyway.
      eval: "getattr(getattr(C.scene, 'zdepth', None), 'encoding', 'log')",
      evalInfo: { showLinkButton: true, description: "The file's Z-Depth encoding" },
      visible: 'submission',
      description:
        "How depth is stored in the EXR (log keeps equal relative precision); starts as the " +
        "file's Z-Depth setting",
    },
    {
      key: 'depth_layers',
      label: 'Depth Layers',
      type: 'int32',
      // No default, as above; 0 or empty = the .blend's own setting.
      propargs: { min: 0, max: 8 },
      eval: "getattr(getattr(C.scene, 'zdepth', None), 'depth_layers', 1)",
      evalInfo: { showLinkButton: true, description: "The file's Z-Depth depth layers" },
      visible: 'submission',
      description:
        'Surfaces per pixel: 1 = the visible one; more renders depth-peeled layers behind it, ' +
        "which the refocus uses (render --depth-layers); starts as the file's setting " +
        "(0 = the file's setting)",
    },
    {
      key: 'depth_layer_mode',
      label: 'Depth Layer Mode',
      type: 'string',
      choices: ZDEPTH_LAYER_MODES,
      // No default, as above; empty = the .blend's own setting.
      eval: "getattr(getattr(C.scene, 'zdepth', None), 'depth_layer_mode', 'AUTO').lower()",
      evalInfo: { showLinkButton: true, description: "The file's Z-Depth layer mode" },
      visible: 'submission',
      description:
        'peel: opaque passes behind the visible surface; slabs: depth slabs with partial ' +
        'coverage (motion blur, transparency); auto: slabs where the scene has motion blur or ' +
        "transparent surfaces (render --layer-mode); starts as the file's setting",
    },

    // The refocus after the render.
    {
      key: 'refocus',
      label: 'Refocus',
      type: 'string',
      choices: ZDEPTH_REFOCUS_MODES,
      default: 'camera',
      visible: 'submission',
      description:
        "off: depth only; camera: the camera's own focus distance of each frame; " +
        'keys: the Focus Keys below',
    },
    {
      key: 'focus_keys',
      label: 'Focus Keys',
      type: 'string',
      default: '',
      visible: 'submission',
      description: "Refocus 'keys': FRAME:METRES pairs, e.g. 1001:2.5,1048:8.0 (eased between keys)",
    },
    {
      key: 'fstop',
      label: 'F-Stop',
      type: 'float',
      default: 0.0,
      propargs: { min: 0.0 },
      visible: 'submission',
      description: "F-number of the refocus; 0 = the camera's own f-stop of each frame",
    },
    {
      key: 'max_radius',
      label: 'Max Blur Radius',
      type: 'int32',
      default: 64,
      propargs: { min: 1, max: 1024 },
      visible: 'submission',
      description: 'Largest blur radius of the refocus, in pixels',
    },
    {
      key: 'refocus_png',
      label: 'PNG Previews',
      type: 'bool',
      default: false,
      visible: 'submission',
      description: 'Also write a PNG beside each refocused EXR, colour managed as the render (view transform, look, exposure)',
    },

    // Which workers refocus: a task type of its own, so that a worker Flamenco blocks for
    // failing refocus tasks of a job (its blocklist is per job and task type) still renders.
    {
      key: 'refocus_task_type',
      label: 'Refocus Task Type',
      type: 'string',
      default: 'misc',
      visible: 'submission',
      description:
        "Task type of the refocus tasks (render tasks are 'blender'). A worker takes only the " +
        "task types listed in its flamenco-worker.yaml (default: blender, ffmpeg, " +
        "file-management, misc): 'misc' runs on every default worker; a type of your own " +
        "(e.g. zdepth-refocus) needs it added to the workers that should refocus",
    },

    // How a worker finds blender_zdepth.
    {
      key: 'zdepth_cli',
      label: 'Z-Depth cli.py',
      type: 'string',
      default: '',
      visible: 'submission',
      description:
        "Path of blender_zdepth/cli.py on the workers; empty = the blender_zdepth extension " +
        "installed in the worker's Blender. May use a Manager variable, e.g. {zdepth_cli}",
    },

    // Filled in by the add-on.
    {
      key: 'blendfile',
      type: 'string',
      required: true,
      description: 'Path of the .blend to render',
      visible: 'web',
    },
  ],
};

function compileJob(job) {
  print('Render with Z-Depth + Refocus job submitted');
  const settings = job.settings;
  const plan = zdepthPlan(job);
  // Show the folder actually used when the job is looked at later.
  settings.render_output_path = plan.outputDir;

  const chunks = frameChunker(settings.frames, plan.chunkSize);
  for (let chunk of chunks) {
    const steps = zdepthFrameCount(chunk);
    const renderTask = author.Task(`render-${chunk}`, 'blender');
    renderTask.addCommand(
      zdepthBlenderCommand(settings, plan, zdepthRenderArgs(settings, plan, chunk), steps)
    );
    job.addTask(renderTask);

    if (plan.refocus === 'off') {
      continue;
    }
    const refocusTask = author.Task(`refocus-${chunk}`, plan.refocusTaskType);
    refocusTask.addCommand(
      zdepthBlenderCommand(settings, plan, zdepthRefocusArgs(plan, chunk), steps)
    );
    refocusTask.addDependency(renderTask);
    job.addTask(refocusTask);
  }
  print(`${chunks.length} chunk(s) into ${plan.outputDir}, refocus: ${plan.refocus}`);
}

// Read and check the settings once; throw one clear message when one is wrong.
function zdepthPlan(job) {
  const settings = job.settings;
  const fail = (message) => {
    throw `Render with Z-Depth + Refocus: ${message}`;
  };

  const chunkSize = Number(settings.chunk_size === undefined ? 10 : settings.chunk_size);
  if (!(chunkSize >= 1) || Math.floor(chunkSize) !== chunkSize) {
    fail(`chunk_size must be a whole number of frames, 1 or more, not ${settings.chunk_size}`);
  }
  // Empty (the setting's eval did not run): the .blend's own Z-Depth setting, which the
  // render command uses when it is given no option.
  const encoding = settings.depth_encoding || '';
  if (encoding && ZDEPTH_ENCODINGS.indexOf(encoding) < 0) {
    fail(`depth_encoding must be one of ${ZDEPTH_ENCODINGS.join(', ')}, not "${encoding}"`);
  }
  const unset = [undefined, null, ''].indexOf(settings.depth_layers) >= 0;
  const layers = unset ? 0 : Number(settings.depth_layers);
  if (!(layers >= 0 && layers <= 8) || Math.floor(layers) !== layers) {
    fail(`depth_layers must be a whole number from 1 to 8 (0 = the file's setting), not ` +
      `${settings.depth_layers}`);
  }
  const refocusTaskType = String(
    settings.refocus_task_type === undefined ? 'misc' : settings.refocus_task_type
  ).trim();
  if (!/^[A-Za-z0-9_.-]+$/.test(refocusTaskType)) {
    fail(`refocus_task_type must be a task type name such as misc or zdepth-refocus, not ` +
      `"${settings.refocus_task_type}"`);
  }
  const layerMode = settings.depth_layer_mode || '';
  if (layerMode && ZDEPTH_LAYER_MODES.indexOf(layerMode) < 0) {
    fail(`depth_layer_mode must be one of ${ZDEPTH_LAYER_MODES.join(', ')}, not "${layerMode}"`);
  }
  const refocus = settings.refocus || 'off';
  if (ZDEPTH_REFOCUS_MODES.indexOf(refocus) < 0) {
    fail(`refocus must be one of ${ZDEPTH_REFOCUS_MODES.join(', ')}, not "${refocus}"`);
  }
  const focusKeys = String(settings.focus_keys || '').replace(/\s+/g, '');
  const keyPair = '-?\\d+(\\.\\d+)?:(\\d+\\.?\\d*|\\.\\d+)';
  if (refocus === 'keys' && !new RegExp(`^${keyPair}(,${keyPair})*$`).test(focusKeys)) {
    fail(
      `refocus 'keys' needs Focus Keys as FRAME:METRES pairs, e.g. 1001:2.5,1048:8.0, ` +
        `not "${settings.focus_keys || ''}"`
    );
  }
  const fstop = Number(settings.fstop || 0);
  if (!(fstop >= 0) || !isFinite(fstop)) {
    fail(`fstop must be 0 (the camera's) or a positive f-number, not ${settings.fstop}`);
  }
  const maxRadius = Number(settings.max_radius === undefined ? 64 : settings.max_radius);
  if (!(maxRadius >= 1) || Math.floor(maxRadius) !== maxRadius) {
    fail(`max_radius must be a whole number of pixels, 1 or more, not ${settings.max_radius}`);
  }
  const cli = String(settings.zdepth_cli || '').trim();
  if (/["\r\n]|\\$/.test(cli)) {
    fail('zdepth_cli must be a plain path to cli.py (no quotes or line breaks, no trailing \\)');
  }
  if (!settings.blendfile) {
    fail('no blendfile setting (the add-on fills it in when it submits the job)');
  }

  const outputDir = zdepthOutputDir(job);
  // Shaman and BAT submit a copy named <name>.flamenco.blend: name the files after <name>.
  const stem = path.stem(settings.blendfile).replace(/\.flamenco$/, '');
  const name = `${stem.replace(/#/g, '_')}.####`;
  return {
    chunkSize: chunkSize,
    encoding: encoding,
    layers: layers,
    layerMode: layerMode,
    refocus: refocus,
    refocusTaskType: refocusTaskType,
    focusKeys: focusKeys,
    fstop: fstop,
    maxRadius: maxRadius,
    png: Boolean(settings.refocus_png),
    cli: cli,
    outputDir: outputDir,
    depthDir: path.join(outputDir, 'depth'),
    refocusDir: path.join(outputDir, 'refocus'),
    name: name,
  };
}

// The output folder: render_output_path as the add-on evaluated it, with {timestamp} filled in
// (the job's submission time); without it, <render_output_root>/<job name>/<timestamp>.
function zdepthOutputDir(job) {
  const settings = job.settings;
  let dir = settings.render_output_path;
  if (!dir) {
    if (!settings.render_output_root) {
      throw 'Render with Z-Depth + Refocus: no render_output_root setting: choose an output folder';
    }
    dir = path.join(settings.render_output_root, job.name || 'zdepth', '{timestamp}');
  }
  return dir.replace(/{([^}]+)}/g, (match, name) =>
    name === 'timestamp' ? formatTimestampLocal(job.created) : match
  );
}

// `render` for one chunk: the depth EXRs (with the beauty the refocus needs) of its frames.
function zdepthRenderArgs(settings, plan, chunk) {
  let args = [
    'render', settings.blendfile,
    '--out', plan.depthDir,
    '--frames', chunk,
    '--name', plan.name,
  ];
  if (plan.refocus !== 'off') {
    args = args.concat(['--beauty', 'same-file']);
  }
  // Given when set, so the job's value wins over the .blend's own Z-Depth setting; unset, the
  // render uses the .blend's setting.
  if (plan.encoding) {
    args = args.concat(['--encoding', plan.encoding]);
  }
  if (plan.layerMode) {
    args = args.concat(['--layer-mode', plan.layerMode]);
  }
  if (plan.layers) {
    args = args.concat(['--depth-layers', String(plan.layers)]);
  }
  return args;
}

// `dof` for one chunk; --skip-existing makes a re-queued task do only the missing frames.
function zdepthRefocusArgs(plan, chunk) {
  let args = [
    'dof',
    path.join(plan.depthDir, `${plan.name}.exr`),
    path.join(plan.refocusDir, `${plan.name}.exr`),
    '--frames', chunk,
    '--skip-existing',
    '--max-radius', String(plan.maxRadius),
  ];
  if (plan.refocus === 'keys') {
    args = args.concat(['--focus-keys', plan.focusKeys]);
  }
  if (plan.fstop > 0) {
    args = args.concat(['--fstop', String(plan.fstop)]);
  }
  if (plan.png) {
    args.push('--png');
  }
  return args;
}

// The number of frames of a chunk as frameChunker writes it ("1-4", "9,10", "3,5-7"): the step
// count of its commands, as Flamenco's own Blender job gives its render commands (with its
// frameCount(chunk)), so that the web interface shows a task's progress. Flamenco's own helper
// when the Manager has one, else counted here.
function zdepthFrameCount(chunk) {
  if (typeof frameCount === 'function') {
    return frameCount(chunk);
  }
  let count = 0;
  for (const part of String(chunk).split(',')) {
    const range = /^\s*(-?\d+)\s*(?:(?:-|\.\.)\s*(-?\d+))?\s*$/.exec(part);
    count += range && range[2] !== undefined ? Math.abs(Number(range[2]) - Number(range[1])) + 1 : 1;
  }
  return count;
}

// Run blender_zdepth inside the worker's Blender:
//   {blender} {blenderArgs} FILE.blend --python-exit-code 1 --python-expr <locate cli.py> -- ARGS
// `steps`: the frames of the chunk (Flamenco's step count of the command).
function zdepthBlenderCommand(settings, plan, cliArgs, steps) {
  return author.Command('blender-render', {
    exe: '{blender}',
    exeArgs: '{blenderArgs}',
    argsBefore: [],
    blendfile: settings.blendfile,
    args: ['--python-exit-code', '1', '--python-expr', zdepthBootstrap(plan.cli), '--'].concat(cliArgs),
  }, steps);
}

// Python run by the worker's Blender: find blender_zdepth's cli.py (the given path, else the
// extension in one of this Blender's extension repositories, else a legacy add-on folder) and
// hand over to it; one clear error line and exit code 1 when it cannot be found.
function zdepthBootstrap(cli) {
  return [
    'import os, runpy, sys',
    'import bpy',
    `given = r"${cli}"`,
    'def zdepth_cli():',
    '    if given:',
    '        return given',
    '    roots = [r.directory for r in bpy.context.preferences.extensions.repos if r.enabled]',
    '    roots += bpy.utils.script_paths(subdir="addons")',
    '    for root in roots:',
    '        candidate = os.path.join(root, "blender_zdepth", "cli.py")',
    '        if os.path.isfile(candidate):',
    '            return candidate',
    'def zdepth_exit(code):',
    '    sys.stdout.flush()',
    '    sys.stderr.flush()',
    '    if bpy.app.binary_path:',
    '        sys.exit(code)',
    '    os._exit(code)  # the bpy module (no Blender binary) can hang at interpreter exit',
    'cli = zdepth_cli()',
    'if cli is None or not os.path.isfile(cli):',
    '    where = "the path in the job setting zdepth_cli (" + given + ") is not a file" if given else "no blender_zdepth extension is installed in this Blender"',
    '    sys.stderr.write("blender_zdepth farm: error: " + where + " (" + (bpy.app.binary_path or sys.executable) + ", Blender " + bpy.app.version_string + "): install the blender_zdepth extension for the user this worker runs as, or set zdepth_cli to the path of its cli.py (see docs/farm.md)\\n")',
    '    zdepth_exit(1)',
    'print("blender_zdepth farm: running " + cli, flush=True)',
    'try:',
    '    runpy.run_path(cli, run_name="__main__")',
    '    code = 0',
    'except SystemExit as done:',
    '    code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)',
    'zdepth_exit(code)',
  ].join('\n');
}
