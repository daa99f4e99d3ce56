// One rank of a data-parallel test job (test/distributed.test.ts spawns one process per rank; it runs the
// compiled library in dist/). argv[2] is a JSON job: { rank, worldSize, port, timeoutMs, clip, vocab, data,
// dtype, out, runs: [{ name, dtype?, data?, trainer options…, killAfter? } | { name, data?, benchmark: options }] }. Each run's final prompt state
// (a benchmark's result) is written to
// `${out}/${name}-rank${rank}.json` (`byRank: { option: [per rank] }` sets one rank's option); a failure prints `FAILED <code>: <message>` and exits 3.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Clip, DomainDataset, IPTrainer, PromptModel, runProtectionBenchmark, setThreads } from '../../dist/index.js';

const job = JSON.parse(process.argv[2]);
setThreads(1);
// One CLIP per dtype (a run may name its own `dtype`; default the job's).
const clips = new Map();
const clipOf = async (dtype) => {
  if (!clips.has(dtype)) clips.set(dtype, await Clip.load(job.clip, { vocab: job.vocab, device: 'cpu', dtype }));
  return clips.get(dtype);
};
// A run may name its own data folder (`data`); default the job's.
const domainsOf = async (root) => ({
  dots: await DomainDataset.fromFolder(root, { domain: 'dots' }),
  stripes: await DomainDataset.fromFolder(root, { domain: 'stripes' }),
});
try {
  for (const run of job.runs) {
    // byRank: { option: [value of rank 0, value of rank 1, …] } (a mismatching rank, a rank to kill).
    const { name, byRank = {}, data: runData = job.data, benchmark, ...rest } = run;
    const distributed = job.worldSize > 1
      ? { rank: job.rank, worldSize: job.worldSize, masterPort: job.port, timeoutMs: job.timeoutMs }
      : undefined;
    if (benchmark) {
      // { benchmark: options }: runProtectionBenchmark on the run's data; the whole result and the training
      // steps' progress ({ stage, iteration, terms }) are written.
      const steps = [];
      const result = await runProtectionBenchmark({
        clip: await clipOf(job.dtype), data: runData, ...benchmark, ...(distributed ? { distributed } : {}),
        onProgress: (e) => { if (e.training) steps.push({ stage: e.stage, iteration: e.training.iteration, terms: e.training.terms }); },
      });
      writeFileSync(join(job.out, `${name}-rank${job.rank}.json`), JSON.stringify({ result, steps }));
      continue;
    }
    const { dots, stripes } = await domainsOf(runData);
    const mine = Object.fromEntries(Object.entries(byRank).map(([k, v]) => [k, v[job.rank]]).filter(([, v]) => v !== null));
    const { killAfter, abortAfter, stopAfter, dtype = job.dtype, ...options } = { ...rest, ...mine };
    const controller = new AbortController();
    const prompt = await PromptModel.create(await clipOf(dtype), dots.classNames, { seed: 1 });
    const trainer = new IPTrainer(prompt, {
      ...options, ...(distributed ? { distributed } : {}),
      onProgress: (p) => {
        if (killAfter !== undefined && p.iteration === killAfter) process.kill(process.pid, 'SIGKILL');
        if (abortAfter !== undefined && p.iteration === abortAfter) controller.abort();
        if (stopAfter !== undefined && p.iteration === stopAfter) process.kill(process.pid, 'SIGSTOP');
      },
    });
    const data = options.scenario === 'target-specified' ? { authorized: dots, unauthorized: stripes } : { authorized: dots };
    const result = await trainer.fit(data, { signal: controller.signal });
    const state = await prompt.state();
    const plain = Object.fromEntries(Object.entries(state).map(([k, t]) => [k, Array.from(t.data)]));
    writeFileSync(join(job.out, `${name}-rank${job.rank}.json`),
      JSON.stringify({ state: plain, resumedFrom: result.resumedFrom, iterations: result.iterations, history: result.history }));
    prompt.dispose();
  }
} catch (err) {
  console.log(`FAILED ${err.code}: ${err.message}`);
  process.exit(3);
}
for (const clip of clips.values()) clip.dispose();
process.exit(0);
