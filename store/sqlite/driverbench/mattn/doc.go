// Package mattn benchmarks github.com/mattn/go-sqlite3 (cgo).
package mattn
