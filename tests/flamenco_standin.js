// A small stand-in for the job compiler of a Flamenco 3 Manager, to run a job type script's
// compileJob() under Node.js in the tests.
//
//   node flamenco_standin.js JOBTYPE.js JOB.json
//
// JOB.json: {"name": ..., "created": ISO time, "settings": {...}}. Prints one JSON object:
// {"jobType": JOB_TYPE, "settings": the job's settings after compileJob, "tasks": [{name, type,
// commands: [{name, parameters}], dependencies: [task names]}], "log": [printed lines]}, or exits
// with status 3 and {"error": message} when the script throws (as the Manager refuses the job).
//
// What it provides, as Flamenco's documentation and its built-in job types use it (written for
// these tests, not taken from Flamenco):
// * globals print(...), alert(...), frameChunker(frames, chunkSize), formatTimestampLocal(time);
// * author.Task(name, type) -> task with addCommand(cmd), addDependency(task) (name and type
//   required); author.Command(name, parameters[, totalSteps]);
// * path.join / dirname / basename / stem on forward-slash paths (join cleans the result);
// * the job: name, created (a Date), settings, addTask(task).
// Go functions that return an error throw in the script, so bad input throws here too.
// frameChunker: items "A", "A-B" or "A..B" separated by commas; frames sorted, duplicates
// dropped, cut into chunks of at most chunkSize frames, each written back compactly: a run of
// three or more frames as "A-B", two frames as "A,B", one as "A" (so 1-10 in chunks of 4 gives
// "1-4", "5-8", "9,10").

'use strict';

const fs = require('fs');
const vm = require('vm');

function explodeFrames(text) {
  const frames = new Set();
  const normal = String(text).trim().split('..').join('-');
  if (!normal) {
    throw new Error(`invalid range "${text}": empty range`);
  }
  for (const part of normal.split(',')) {
    const ends = part.split('-').map((s) => s.trim());
    if (ends.length > 2 || ends.some((s) => !/^[+-]?\d+$/.test(s))) {
      throw new Error(`invalid range "${text}": ${part}`);
    }
    const first = parseInt(ends[0], 10);
    const last = parseInt(ends[ends.length - 1], 10);
    for (let f = first; f <= last; f++) {
      frames.add(f);
    }
  }
  return Array.from(frames).sort((a, b) => a - b);
}

function compactFrames(frames) {
  const parts = [];
  let start = frames[0];
  for (let i = 1; i <= frames.length; i++) {
    if (i < frames.length && frames[i] === frames[i - 1] + 1) {
      continue;
    }
    const end = frames[i - 1];
    if (end === start) parts.push(`${start}`);
    else if (end === start + 1) parts.push(`${start}`, `${end}`);
    else parts.push(`${start}-${end}`);
    start = frames[i];
  }
  return parts.join(',');
}

function frameChunker(frames, chunkSize) {
  if (typeof chunkSize !== 'number' || !Number.isInteger(chunkSize) || chunkSize < 1) {
    throw new Error(`invalid chunk size, must be positive number: ${chunkSize}`);
  }
  const all = explodeFrames(frames);
  if (all.length === 0) {
    throw new Error(`invalid range "${frames}": empty range`);
  }
  const chunks = [];
  for (let i = 0; i < all.length; i += chunkSize) {
    chunks.push(compactFrames(all.slice(i, i + chunkSize)));
  }
  return chunks;
}

function formatTimestampLocal(time) {
  const t = time instanceof Date ? time : new Date(time);
  const two = (n) => String(n).padStart(2, '0');
  return (
    `${t.getFullYear()}-${two(t.getMonth() + 1)}-${two(t.getDate())}_` +
    `${two(t.getHours())}${two(t.getMinutes())}${two(t.getSeconds())}`
  );
}

function cleanPath(p) {
  const absolute = p.startsWith('/');
  const out = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..' && out.length && out[out.length - 1] !== '..') out.pop();
    else if (part !== '..' || !absolute) out.push(part);
  }
  const joined = out.join('/');
  return absolute ? `/${joined}` : joined || '.';
}

const pathModule = {
  join: (...parts) => cleanPath(parts.filter((p) => p !== '').join('/')),
  dirname: (p) => {
    const i = p.lastIndexOf('/');
    return i < 0 ? '.' : cleanPath(p.slice(0, i) || '/');
  },
  basename: (p) => {
    const trimmed = p.replace(/\/+$/, '');
    return trimmed.slice(trimmed.lastIndexOf('/') + 1);
  },
  stem: (p) => {
    const base = pathModule.basename(p);
    const dot = base.lastIndexOf('.');
    return dot > 0 ? base.slice(0, dot) : base;
  },
};

let nextTaskId = 1;
const author = {
  Task(name, type) {
    name = String(name || '').trim();
    type = String(type || '').trim();
    if (!name) throw new Error('author.Task(name, type): name is required');
    if (!type) throw new Error('author.Task(name, type): type is required');
    const task = {
      id: nextTaskId++,
      name: name,
      type: type,
      commands: [],
      dependencies: [],
      addCommand(cmd) {
        this.commands.push(cmd);
      },
      addDependency(dep) {
        this.dependencies.push(dep);
      },
    };
    return task;
  },
  Command(name, parameters, totalSteps) {
    // totalSteps: the step count the worker reports progress against (optional)
    const cmd = { name: name, parameters: parameters };
    if (totalSteps !== undefined) cmd.totalSteps = totalSteps;
    return cmd;
  },
};

function main() {
  const [scriptPath, jobPath] = process.argv.slice(2);
  const source = fs.readFileSync(scriptPath, 'utf8');
  const input = JSON.parse(fs.readFileSync(jobPath, 'utf8'));
  const log = [];
  const tasks = [];
  const job = {
    name: input.name,
    created: new Date(input.created),
    settings: input.settings,
    addTask(task) {
      tasks.push(task);
    },
  };
  const context = vm.createContext({
    author: author,
    path: pathModule,
    print: (...args) => log.push(args.map(String).join(' ')),
    alert: (...args) => log.push(`ALERT ${args.map(String).join(' ')}`),
    frameChunker: frameChunker,
    formatTimestampLocal: formatTimestampLocal,
  });
  let jobType;
  try {
    vm.runInContext(source, context, { filename: scriptPath });
    jobType = vm.runInContext('JOB_TYPE', context);
    context.__job = job;
    vm.runInContext('compileJob(__job)', context);
  } catch (exc) {
    const message = exc instanceof Error ? exc.message : String(exc);
    process.stdout.write(JSON.stringify({ error: message, log: log }));
    process.exit(3);
  }
  const byId = new Map(tasks.map((t) => [t.id, t.name]));
  const result = {
    jobType: jobType,
    settings: job.settings,
    log: log,
    tasks: tasks.map((t) => ({
      name: t.name,
      type: t.type,
      commands: t.commands,
      dependencies: t.dependencies.map((d) => (byId.has(d.id) ? d.name : `<not added: ${d.name}>`)),
    })),
  };
  process.stdout.write(JSON.stringify(result));
}

main();
