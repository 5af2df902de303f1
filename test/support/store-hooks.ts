import type { Completion, Lease, LeasedJob, LeaseRequest, Store } from '../../src/core/store.js';

/*
 * Store wrappers that pass one method through a hook, which calls `next` to
 * reach the real store. Tests use them to observe calls or to hold one open,
 * as a slow round trip would: the real stores respond too fast to catch a
 * lease or a commit in flight. Every other method is the store's own.
 */

/** Returns `store` with its lease calls passed through `hook`. */
export function withLeaseHook(
  store: Store<any>,
  hook: (request: LeaseRequest, next: (request: LeaseRequest) => Promise<LeasedJob[]>) => Promise<LeasedJob[]>,
): Store<any> {
  return hooked(store, 'lease', (request: LeaseRequest) => hook(request, (passed) => store.lease(passed)));
}

/** Returns `store` with its commit calls passed through `hook`. */
export function withCommitHook(
  store: Store<any>,
  hook: (lease: Lease, completion: Completion<any>, next: () => Promise<boolean>) => Promise<boolean>,
): Store<any> {
  return hooked(store, 'commit', (lease: Lease, completion: Completion<any>) =>
    hook(lease, completion, () => store.commit(lease, completion)),
  );
}

/**
 * Returns `store` with its commit and fail calls rejecting with `error`, as
 * they would on a store whose disk is full or whose connection dropped.
 */
export function withFailingOutcomeWrites(store: Store<any>, error: Error): Store<any> {
  const failing = async () => {
    throw error;
  };
  return hooked(hooked(store, 'commit', failing), 'fail', failing);
}

/** Returns a proxy of `store` whose method `name` is `replacement`. */
function hooked(store: Store<any>, name: keyof Store<any>, replacement: (...args: any[]) => Promise<unknown>): Store<any> {
  return new Proxy(store, {
    get(target, property) {
      if (property === name) return replacement;
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
