package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// postgresEnv names the PostgreSQL server the tests also run on: a URL of a
// role that may create databases, e.g.
// postgres://thon:thon@127.0.0.1:5432/postgres?sslmode=disable.
// scripts/test installs and starts a server and sets it.
const postgresEnv = "THON_TEST_POSTGRES"

// eachBackend runs a test on SQLite (a file in a temporary directory) and
// on PostgreSQL (a fresh database, dropped at the end) as subtests; dsn is
// what Store.Open takes.
func eachBackend(t *testing.T, test func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) {
		test(t, filepath.Join(t.TempDir(), "thon.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		test(t, freshPostgres(t))
	})
}

// open opens a store for one test and closes it at the end.
func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// freshPostgres creates an empty database on the $THON_TEST_POSTGRES server,
// drops it when the test ends, and returns its URL. It skips the test when
// the variable is unset.
func freshPostgres(t *testing.T) string {
	t.Helper()
	admin := os.Getenv(postgresEnv)
	if admin == "" {
		t.Skip("PostgreSQL variant skipped: set " + postgresEnv + "=postgres://user:password@host:5432/postgres?sslmode=disable " +
			"(a role that may CREATE DATABASE) to run it; scripts/test sets up a local server and sets it")
	}
	u, err := url.Parse(admin)
	if err != nil || !isPostgresURL(admin) {
		t.Fatalf("%s is not a postgres:// URL: %q", postgresEnv, redact(admin))
	}
	var b [6]byte
	rand.Read(b[:])
	name := "thon_test_" + hex.EncodeToString(b[:])

	ctx := context.Background()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	// A collation that ignores punctuation, as glibc's en_US does, so a
	// query that relies on byte order shows; servers without ICU get their
	// default.
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name+` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US-u-ka-shifted'`); err != nil {
		if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
			db.Close()
			t.Fatalf("create test database on %s: %v", redact(admin), err)
		}
	}
	// Registered before any store of the test opens, so it runs after they close.
	t.Cleanup(func() {
		defer db.Close()
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

func migrationCount(t *testing.T) int {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v %v", files, err)
	}
	return len(files)
}

// Replicas starting at once against one PostgreSQL database all come up,
// and each migration is applied exactly once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := freshPostgres(t)
	ctx := context.Background()
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = Open(ctx, dsn)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d of %d: %v", i+1, n, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	var rows, versions int
	if err := stores[0].db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	if want := migrationCount(t); rows != want || versions != want {
		t.Fatalf("schema_migrations has %d rows of %d versions, want %d", rows, versions, want)
	}
	// Every replica sees the others' writes.
	if err := stores[1].CreateGroup(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if _, err := stores[n-1].Group(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
}

func TestMigrationsRunOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		for range 2 {
			s, err := Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			var rows int
			err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows)
			s.Close()
			if err != nil || rows != migrationCount(t) {
				t.Fatalf("schema_migrations: %d rows, %v", rows, err)
			}
		}
	})
}

func TestOpenBadPostgresURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback refuses at once; the password must not show.
	_, err := Open(ctx, "postgres://thon:s3cret@127.0.0.1:1/thon?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("opened a PostgreSQL server that is not there")
	}
	if msg := err.Error(); !strings.Contains(msg, "connect to PostgreSQL at postgres://thon:xxxxx@127.0.0.1:1/thon") || strings.Contains(msg, "s3cret") {
		t.Fatalf("error: %v", err)
	}
}

func TestRebind(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT a FROM t WHERE b = ? AND c IN (?,?)`, `SELECT a FROM t WHERE b = $1 AND c IN ($2,$3)`},
		{`SELECT '?', "odd?col" FROM t WHERE x = ? -- why?` + "\n" + `AND y = ?`, `SELECT '?', "odd?col" FROM t WHERE x = $1 -- why?` + "\n" + `AND y = $2`},
		{`SELECT 'it''s ?' WHERE a = ?`, `SELECT 'it''s ?' WHERE a = $1`},
		{`VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, `VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`},
		{`SELECT 1`, `SELECT 1`},
	} {
		if got := postgres.rebind(c.in); got != c.want {
			t.Errorf("rebind(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
		if got := sqlite.rebind(c.in); got != c.in {
			t.Errorf("sqlite rebind changed %q to %q", c.in, got)
		}
	}
}

func TestSchemaDialect(t *testing.T) {
	in := "CREATE TABLE e (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, s TEXT NOT NULL, context TEXT);"
	want := "CREATE TABLE e (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, s TEXT COLLATE \"C\" NOT NULL, context TEXT COLLATE \"C\");"
	if got := postgres.schema(in); got != want {
		t.Fatalf("schema\n got %q\nwant %q", got, want)
	}
	if got := sqlite.schema(in); got != in {
		t.Fatalf("sqlite schema changed: %q", got)
	}
}
