// Package modernc benchmarks modernc.org/sqlite.
package modernc
