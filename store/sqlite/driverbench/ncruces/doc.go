// Package ncruces benchmarks github.com/ncruces/go-sqlite3.
package ncruces
