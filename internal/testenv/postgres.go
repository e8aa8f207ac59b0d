package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// PostgresEnv names the PostgreSQL server tests may create databases on.
const PostgresEnv = "THON_TEST_POSTGRES"

// Postgres creates an empty database on the $THON_TEST_POSTGRES server,
// drops it when the test ends, and returns its URL. It skips the test,
// saying how to run it, when the variable is unset (scripts/test sets it).
func Postgres(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(PostgresEnv)
	if admin == "" {
		t.Skip("PostgreSQL variant skipped: set " + PostgresEnv + "=postgres://user:password@host:5432/postgres?sslmode=disable; scripts/test sets up a local server and sets it")
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s is not a URL", PostgresEnv)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "thon_test_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		db.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		defer db.Close()
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
