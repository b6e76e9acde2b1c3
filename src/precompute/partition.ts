import { UserError } from '../util/errors.js';

export interface Partition {
  index: number;
  count: number;
  /** where the index came from, for the log */
  source: 'flag' | 'slurm' | 'kubernetes' | 'default';
}

/**
 * --partition i/n wins; else Slurm array jobs (SLURM_ARRAY_TASK_ID relative to SLURM_ARRAY_TASK_MIN,
 * SLURM_ARRAY_TASK_COUNT); else a Kubernetes Indexed Job (JOB_COMPLETION_INDEX with --partitions n).
 */
export function resolvePartition(flag: string | undefined, partitions: number | undefined, env: NodeJS.ProcessEnv): Partition {
  if (flag !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(flag.trim());
    if (!m) throw new UserError(`--partition ${flag}: expected i/n with 0 <= i < n, e.g. --partition 0/4`);
    return check(Number(m[1]), Number(m[2]), 'flag', '--partition');
  }
  if (env.SLURM_ARRAY_TASK_ID !== undefined && env.SLURM_ARRAY_TASK_ID !== '') {
    const id = Number(env.SLURM_ARRAY_TASK_ID);
    const min = Number(env.SLURM_ARRAY_TASK_MIN ?? 0);
    const count = partitions ?? Number(env.SLURM_ARRAY_TASK_COUNT);
    if (!Number.isInteger(count)) throw new UserError('SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --partitions n');
    return check(id - min, count, 'slurm', 'SLURM_ARRAY_TASK_ID');
  }
  if (env.JOB_COMPLETION_INDEX !== undefined && env.JOB_COMPLETION_INDEX !== '') {
    if (partitions === undefined) throw new UserError('JOB_COMPLETION_INDEX is set (Kubernetes Indexed Job): pass --partitions n equal to the Job\'s completions');
    return check(Number(env.JOB_COMPLETION_INDEX), partitions, 'kubernetes', 'JOB_COMPLETION_INDEX');
  }
  if (partitions !== undefined && partitions !== 1) {
    throw new UserError('--partitions n needs a partition index: --partition i/n, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX');
  }
  return { index: 0, count: 1, source: 'default' };
}

function check(index: number, count: number, source: Partition['source'], what: string): Partition {
  if (!Number.isInteger(count) || count < 1) throw new UserError(`${what}: partition count must be a positive integer, got ${count}`);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new UserError(`${what}: partition index ${index} is outside 0..${count - 1}`);
  return { index, count, source };
}

/** Contiguous shard ranges: partition i gets shards [floor(i*S/n), floor((i+1)*S/n)). */
export function shardsOfPartition(shardCount: number, p: Pick<Partition, 'index' | 'count'>): { start: number; end: number } {
  return { start: Math.floor((p.index * shardCount) / p.count), end: Math.floor(((p.index + 1) * shardCount) / p.count) };
}
