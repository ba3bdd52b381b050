package sqlite

// The database/sql driver: modernc.org/sqlite, SQLite compiled to pure Go
// (no cgo), chosen by the measurements of driverbench (README.md, "Driver").
import _ "modernc.org/sqlite"

const driverName = "sqlite"
