/**
 * The source of "now" in milliseconds since the epoch. Stores and workers take
 * one so that tests can move time forward and back without sleeping.
 */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();
