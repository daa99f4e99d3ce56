/**
 * Progress display for long command-line work (training, rendering, evaluation). On a terminal it redraws one
 * line in place: a bar, the count, the ETA and the current values (loss terms, learning rate). Anywhere else
 * (a pipe, a log file, CI) it prints plain lines, at most one every few seconds plus the last one, so logs
 * stay readable.
 */

/**
 * Where progress is written: a stream with `write`, and `isTTY`/`columns` when it is a terminal.
 * @category Demo and progress
 */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Options of {@link ProgressBar}.
 * @category Demo and progress
 */
export interface ProgressOptions {
  /** Default `process.stderr`. */
  stream?: ProgressStream;
  /** Redraw in place (terminal) or print lines; default: the stream's `isTTY`. */
  tty?: boolean;
  /** Text before the bar, e.g. `'train'`. */
  label?: string;
  /** Plain mode: least milliseconds between two lines (default 5000; the first and last update always print). */
  intervalMs?: number;
  /** Nothing is written when false (default true). */
  enabled?: boolean;
  /** Clock in milliseconds (default `Date.now`), for tests. */
  now?: () => number;
}

/**
 * What an update shows besides the count.
 * @category Demo and progress
 */
export interface ProgressInfo {
  /** Seconds left; computed from the elapsed time when omitted. */
  etaSeconds?: number;
  /** Named values, shown as `name value` (numbers with 4 significant digits). */
  values?: Record<string, number | string>;
  /** A short note, e.g. `'epoch 3/10'`. */
  note?: string;
}

/** `75` → `'1m15s'`, `3725` → `'1h02m'`, non-finite → `'?'`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A bar of `width` cells, `done/total` of them filled: `'█████░░░░░'`. */
export function renderBar(done: number, total: number, width: number): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const filled = Math.round(frac * width);
  return '█'.repeat(filled) + '░'.repeat(Math.max(0, width - filled));
}

/** A number as the progress line shows it: 4 significant digits, exponent form when tiny or huge. */
export function formatValue(v: number | string): string {
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a < 1e-3 || a >= 1e5 ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}

/**
 * A progress bar with ETA.
 *
 * ```ts
 * const bar = new ProgressBar(total, { label: 'train' });
 * bar.update(i, { values: { loss: 0.41, lr: 0.01 } });
 * bar.done('trained');
 * ```
 * @category Demo and progress
 */
export class ProgressBar {
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly label: string;
  private readonly intervalMs: number;
  private readonly enabled: boolean;
  private readonly now: () => number;
  private readonly started: number;
  private lastPrint = -Infinity;
  private lastLine = '';
  private drawn = false;

  constructor(private total: number, opts: ProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = opts.tty ?? this.stream.isTTY === true;
    this.label = opts.label ?? '';
    this.intervalMs = opts.intervalMs ?? 5000;
    this.enabled = opts.enabled ?? true;
    this.now = opts.now ?? Date.now;
    this.started = this.now();
  }

  /**
   * The line an update would show (without the terminal's control characters). On a terminal the bar takes
   * the room the text leaves in `columns` (5 to 20 cells; the percentage goes first when room is short), so the
   * line fits without wrapping; on a terminal too narrow even for that, the full bar comes first and the text is
   * clipped.
   */
  line(done: number, info: ProgressInfo = {}): string {
    const elapsed = (this.now() - this.started) / 1000;
    const eta = info.etaSeconds ?? (done > 0 ? (elapsed / done) * (this.total - done) : NaN);
    const pct = this.total > 0 ? Math.floor((100 * Math.min(done, this.total)) / this.total) : 0;
    const values = Object.entries(info.values ?? {}).map(([k, v]) => `${k} ${formatValue(v)}`).join(' ');
    const head = this.label ? `${this.label} ` : '';
    const tail = `eta ${formatDuration(eta)}${info.note ? ` ${info.note}` : ''}${values ? ` | ${values}` : ''}`;
    const withPct = `${done}/${this.total} ${String(pct).padStart(3)}% ${tail}`;
    if (!this.tty) return `${head}${withPct}`;
    const room = (this.stream.columns ?? 100) - 1 - head.length;
    for (const rest of [withPct, `${done}/${this.total} ${tail}`]) {
      const width = Math.min(20, room - rest.length - 1);
      if (width >= 5) return `${head}${renderBar(done, this.total, width)} ${rest}`;
    }
    return `${head}${renderBar(done, this.total, 20)} ${withPct}`; // a narrow terminal: the bar first, the text clipped
  }

  /** Shows `done` of `total`. Plain mode prints at most one line per interval (and always the last one). */
  update(done: number, info: ProgressInfo = {}): void {
    if (!this.enabled) return;
    const text = this.line(done, info);
    this.lastLine = text;
    const t = this.now();
    if (this.tty) {
      const cols = this.stream.columns ?? 100;
      // Clipped to the terminal's width: a wrapped line cannot be redrawn in place.
      this.stream.write(`\r\x1b[2K${text.length >= cols ? text.slice(0, cols - 1) : text}`);
      this.drawn = true;
    } else if (done >= this.total || t - this.lastPrint >= this.intervalMs) {
      this.stream.write(`${text}\n`);
      this.lastPrint = t;
    }
  }

  /** Prints a line of its own (above the bar on a terminal). */
  log(message: string): void {
    if (!this.enabled) return;
    if (this.tty && this.drawn) this.stream.write(`\r\x1b[2K${message}\n${this.lastLine}`);
    else this.stream.write(`${message}\n`);
  }

  /** Ends the bar: on a terminal, moves past it; then prints `message` if given. */
  done(message?: string): void {
    if (!this.enabled) return;
    if (this.tty && this.drawn) this.stream.write('\n');
    this.drawn = false;
    if (message) this.stream.write(`${message}\n`);
  }

  /** Seconds since the bar was made. */
  get elapsedSeconds(): number {
    return (this.now() - this.started) / 1000;
  }
}
