// Package bench holds papo's measurements: Go benchmarks that start real
// stacks with the launcher (every service with its daprd sidecar) and load
// them from this process. They run only with -bench (`make bench`), never
// under `make test`, and are skipped with -short. Results and how to read
// them: docs/benchmarks.md.
package bench
