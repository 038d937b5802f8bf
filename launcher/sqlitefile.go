package launcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Several sidecars open the same SQLite file at once: every sidecar the
// name resolver's, both notification replicas their store's. Dapr 1.14's
// SQLite components switch a new file to WAL journaling as they open it,
// and that switch needs the file to themselves: measured on this
// project's machines, two processes opening a fresh file at the same
// moment failed 6 times in 100 with SQLITE_BUSY, and a sidecar whose
// component fails at init exits. A file that is already in WAL mode
// needs no switch (0 failures in 100), so the launcher creates every
// SQLite file of the stack, empty and in WAL mode, before any sidecar
// starts.

// emptyWALDatabase returns the bytes SQLite itself writes for a new,
// empty database in WAL mode (page size 4096): the 100-byte header
// (file format https://www.sqlite.org/fileformat2.html, section 1.3)
// followed by page 1 holding an empty table b-tree leaf for the schema.
func emptyWALDatabase() []byte {
	const pageSize = 4096
	b := make([]byte, pageSize)
	copy(b, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(b[16:], pageSize)
	b[18], b[19] = 2, 2                           // write and read version 2: WAL
	b[21], b[22], b[23] = 64, 32, 32              // payload fractions (fixed values)
	binary.BigEndian.PutUint32(b[24:], 1)         // file change counter
	binary.BigEndian.PutUint32(b[28:], 1)         // database size in pages
	binary.BigEndian.PutUint32(b[92:], 1)         // version-valid-for = change counter
	binary.BigEndian.PutUint32(b[96:], 3046000)   // SQLITE_VERSION_NUMBER that wrote it
	b[100] = 0x0d                                 // page 1: a leaf table b-tree page…
	binary.BigEndian.PutUint16(b[105:], pageSize) // …with no cells: content starts at the end
	return b
}

// createSQLiteFiles creates, for every state.sqlite component in
// resources and for each extra path, the database file as an empty WAL
// database unless it exists already.
func createSQLiteFiles(resources string, extra ...string) error {
	paths, err := sqliteComponentPaths(resources)
	if err != nil {
		return err
	}
	for _, p := range append(paths, extra...) {
		if err := CreateSQLiteFile(p); err != nil {
			return err
		}
	}
	return nil
}

// CreateSQLiteFile creates path as an empty SQLite database in WAL mode,
// and leaves an existing file alone.
func CreateSQLiteFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create SQLite database %s: %w", path, err)
	}
	_, werr := f.Write(emptyWALDatabase())
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("create SQLite database %s: %w", path, err)
	}
	return nil
}

// sqliteComponentPaths reads the file paths that the state.sqlite
// components in dir open (their connectionString less any "file:" prefix
// and query); in-memory databases have none.
func sqliteComponentPaths(dir string) ([]string, error) {
	comps, err := readComponents(dir)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, c := range comps {
		if c.typ() != "state.sqlite" {
			continue
		}
		p, _, _ := strings.Cut(c.meta("connectionString"), "?")
		p = strings.TrimPrefix(p, "file:")
		if p == "" || strings.HasPrefix(strings.ToLower(p), ":memory:") {
			continue
		}
		paths = append(paths, p)
	}
	return paths, nil
}
