/**
 * The package's one concurrency model: every object that owns native state runs its native calls one at a time,
 * in call order, from a queue in JS. A call is handed to the addon only when the previous one has settled, so
 * concurrent callers never occupy several libuv worker threads that would then wait on a C++ mutex (which would
 * starve file I/O, DNS and other native work of the thread pool), and the event loop keeps turning meanwhile.
 */

/** A FIFO of async tasks: each starts after every earlier one has settled (fulfilled or rejected). */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0;

  /**
   * Runs `task` after every earlier task of this queue has settled; its result or rejection is returned. On an
   * idle queue the task starts at once (synchronously), so a caller can prepare its next batch while it runs.
   */
  run<T>(task: () => T | Promise<T>): Promise<T> {
    let result: Promise<T>;
    if (this.#pending === 0) {
      try {
        result = Promise.resolve(task());
      } catch (err) {
        result = Promise.reject(err);
      }
    } else {
      result = this.#tail.then(task);
    }
    this.#pending++;
    const settled = () => { this.#pending--; };
    this.#tail = result.then(settled, settled);
    return result;
  }

  /** Tasks queued or running. */
  get pending(): number {
    return this.#pending;
  }
}

const queues = new WeakMap<object, SerialQueue>();

/**
 * The queue of `owner` (created on first use, freed with it). Objects whose native work shares a native lock
 * share a queue: a CLIP model and every prompt model built on it use the CLIP's.
 */
export function queueOf(owner: object): SerialQueue {
  let q = queues.get(owner);
  if (!q) queues.set(owner, (q = new SerialQueue()));
  return q;
}
