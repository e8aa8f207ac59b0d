package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// This file is the one place that knows the two SQL dialects apart. Every
// query in the package is written once, with ? placeholders, in the SQL that
// SQLite and PostgreSQL both speak; db and txn rebind the placeholders for
// PostgreSQL, dialect.schema adapts the migrations, and isUnique/isForeignKey
// classify either driver's constraint errors.

type dialect int

const (
	sqlite dialect = iota
	postgres
)

// isPostgresURL tells a PostgreSQL connection URL from a SQLite file path.
func isPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// redact hides the password of a connection URL, for error messages.
func redact(dsn string) string {
	if !isPostgresURL(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

// openDB opens the database a store path or URL names, with the pool that
// suits its engine.
func openDB(dsn string) (*db, error) {
	if isPostgresURL(dsn) {
		sqldb, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, err
		}
		// Several goroutines (API, front door, gateway) read concurrently;
		// a server handles that, within a bound that leaves room for
		// other replicas on the same server.
		sqldb.SetMaxOpenConns(16)
		sqldb.SetMaxIdleConns(8)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
		sqldb.SetConnMaxLifetime(time.Hour)
		return &db{DB: sqldb, dialect: postgres}, nil
	}
	sqldb, err := sql.Open("sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, err
	}
	// One writer at a time is what SQLite allows anyway; a single connection
	// also makes transactions serialise instead of failing with SQLITE_BUSY.
	sqldb.SetMaxOpenConns(1)
	return &db{DB: sqldb, dialect: sqlite}, nil
}

// db is the store's handle: *sql.DB with queries rebound for its dialect.
type db struct {
	*sql.DB
	dialect dialect
}

func (d *db) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return d.DB.ExecContext(ctx, d.dialect.rebind(q), args...)
}

func (d *db) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return d.DB.QueryContext(ctx, d.dialect.rebind(q), args...)
}

func (d *db) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return d.DB.QueryRowContext(ctx, d.dialect.rebind(q), args...)
}

func (d *db) BeginTx(ctx context.Context, opts *sql.TxOptions) (*txn, error) {
	t, err := d.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &txn{Tx: t, dialect: d.dialect}, nil
}

// txn is a transaction with queries rebound for its dialect.
type txn struct {
	*sql.Tx
	dialect dialect
}

func (t *txn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(ctx, t.dialect.rebind(q), args...)
}

func (t *txn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(ctx, t.dialect.rebind(q), args...)
}

func (t *txn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, t.dialect.rebind(q), args...)
}

func (t *txn) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return t.Tx.PrepareContext(ctx, t.dialect.rebind(q))
}

// rebind turns ? placeholders into PostgreSQL's $1, $2, … (leaving string
// literals, quoted identifiers and comments alone); SQLite takes ? as is.
func (d dialect) rebind(q string) string {
	if d != postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(q[i+1:], c)
			if j < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+j+2])
			i += j + 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+j+1])
			i += j
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

var (
	autoincrement = regexp.MustCompile(`\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b`)
	integerType   = regexp.MustCompile(`\bINTEGER\b`)
	textType      = regexp.MustCompile(`\bTEXT\b`)
)

// schema adapts a migration, written for SQLite, to the dialect:
//   - INTEGER PRIMARY KEY AUTOINCREMENT becomes an identity column;
//   - INTEGER becomes BIGINT, the 64 bits SQLite's INTEGER always has;
//   - TEXT compares byte by byte (COLLATE "C"), as SQLite's BINARY does, so
//     that ORDER BY of names and comparisons of RFC 3339 timestamps stored
//     as text give the same answers on both, whatever the server's locale.
//
// Type names are upper case in the migrations; lower-case words (comments,
// column names) are left alone.
func (d dialect) schema(sqlText string) string {
	if d != postgres {
		return sqlText
	}
	sqlText = autoincrement.ReplaceAllString(sqlText, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
	sqlText = integerType.ReplaceAllString(sqlText, "BIGINT")
	return textType.ReplaceAllString(sqlText, `TEXT COLLATE "C"`)
}

// migrationLock is the key of the PostgreSQL advisory lock that keeps two
// daemons starting at once from both applying a migration.
const migrationLock = 0x7468_6f6e_6d69_67 // "thonmig"

// lockMigrations serialises migrations between processes sharing a
// PostgreSQL database, with a transaction-scoped advisory lock (released at
// commit or rollback) taken before schema_migrations is read. A SQLite file
// belongs to one daemon's data directory and needs none.
func (t *txn) lockMigrations(ctx context.Context) error {
	if t.dialect != postgres {
		return nil
	}
	_, err := t.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(migrationLock))
	return err
}

// isUnique reports a unique-constraint violation of either driver.
func isUnique(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505" // unique_violation
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// isForeignKey reports a foreign-key violation of either driver.
func isForeignKey(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23503" // foreign_key_violation
	}
	return strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}

// classify makes a constraint violation match ErrConflict (a unique key) or
// ErrNotFound (a foreign key: the row it refers to is missing) while
// keeping the driver's message; other errors pass unchanged.
func classify(err error) error {
	switch {
	case isUnique(err):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case isForeignKey(err):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// DiskFull reports a write refused because the disk under the store is
// full: SQLite's SQLITE_FULL, PostgreSQL's disk_full (53100), or ENOSPC.
// Nothing of the refused write was kept (the transaction rolled back), and
// the store works again once there is room.
func DiskFull(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "53100"
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) && coded.Code()&0xff == 13 { // SQLITE_FULL and its extended codes
		return true
	}
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "database or disk is full")
}
