import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Fault tests spawn worker processes and kill them; running files one at a time keeps their timing honest on 2 cores.
    fileParallelism: false,
  },
});
