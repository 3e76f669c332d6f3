// A small typed event emitter (the client has no runtime dependencies).

/** Listener maps: event name → listener arguments. */
export type EventMap = Record<string, unknown[]>;

/**
 * `on` / `off` / `once` over a fixed set of events. A listener that throws
 * does not stop the others (the error is reported with `console.error`).
 */
export class Emitter<E extends EventMap> {
  #listeners = new Map<keyof E, Set<Function>>();

  /** Calls `listener` on every `event` until `off`. */
  on<K extends keyof E>(event: K, listener: (...args: E[K]) => void): void {
    let set = this.#listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener);
  }

  /** Stops calling `listener` on `event`. */
  off<K extends keyof E>(event: K, listener: (...args: E[K]) => void): void {
    this.#listeners.get(event)?.delete(listener);
  }

  /** Calls `listener` on the next `event` only. */
  once<K extends keyof E>(event: K, listener: (...args: E[K]) => void): void {
    const wrapped = (...args: E[K]): void => {
      this.off(event, wrapped);
      listener(...args);
    };
    this.on(event, wrapped);
  }

  /** @internal Calls the listeners of `event`. */
  protected emit<K extends keyof E>(event: K, ...args: E[K]): void {
    const set = this.#listeners.get(event);
    if (set === undefined) return;
    for (const l of [...set]) {
      try {
        (l as (...a: E[K]) => void)(...args);
      } catch (e) {
        console.error(`dcengine: a '${String(event)}' listener threw`, e);
      }
    }
  }

  /** @internal Whether anyone listens to `event`. */
  protected listens<K extends keyof E>(event: K): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0;
  }
}
