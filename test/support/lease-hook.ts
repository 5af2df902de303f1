import type { LeasedJob, LeaseRequest, Store } from '../../src/core/store.js';

/**
 * Returns `store` with its lease calls passed through `hook`, which calls
 * `next` to lease for real. Tests use it to observe lease requests or to hold
 * a lease open, as a slow round trip would: the real stores respond too fast
 * to catch a lease in flight. Every other method is the store's own.
 */
export function withLeaseHook(
  store: Store<any>,
  hook: (request: LeaseRequest, next: (request: LeaseRequest) => Promise<LeasedJob[]>) => Promise<LeasedJob[]>,
): Store<any> {
  const next = (request: LeaseRequest) => store.lease(request);
  return new Proxy(store, {
    get(target, property) {
      if (property === 'lease') return (request: LeaseRequest) => hook(request, next);
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
