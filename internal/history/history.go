package history

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"edged/internal/atomicfile"
	"edged/internal/config"
	"edged/internal/owner"
	"edged/internal/termsafe"
)

// Record is one applied generation. Cause, User and Changed were added
// later: records written before them load with them empty.
type Record struct {
	Generation uint64    `json:"generation"`
	Time       time.Time `json:"time"`
	Trigger    string    `json:"trigger"`
	// Cause is why the generation was made: one of the Cause* constants.
	Cause string `json:"cause,omitempty"`
	// User is who asked for it through the control socket (edged reload,
	// promote, rollback), as the kernel named the caller; "" otherwise.
	User    string       `json:"user,omitempty"`
	Files   []File       `json:"files"`
	Changed []FileChange `json:"changed_files,omitempty"`
	Changes []Change     `json:"changes,omitempty"`
}

// The causes of a generation.
const (
	CauseStartup    = "startup"
	CauseFileChange = "file change"
	CauseSIGHUP     = "SIGHUP"
	CauseReload     = "edged reload"
	CausePromote    = "edged promote"
	CauseRollback   = "edged rollback"
)

// CauseOf is the cause of rec, guessed from its trigger for a record
// written before causes were recorded.
func CauseOf(rec *Record) string {
	switch t := rec.Trigger; {
	case rec.Cause != "":
		return rec.Cause
	case t == "start":
		return CauseStartup
	case t == "SIGHUP":
		return CauseSIGHUP
	case t == "edged reload":
		return CauseReload
	case strings.HasPrefix(t, "file change"), strings.HasPrefix(t, "rescan"):
		return CauseFileChange
	}
	return rec.Trigger
}

// FileChange is one config file a generation added, changed or removed
// against the one before, with its owner and modification time as they
// were when the generation was recorded (none for a removed file).
type FileChange struct {
	Path    string    `json:"path"`
	Action  string    `json:"action"` // added | changed | removed
	Owner   string    `json:"owner,omitempty"`
	ModTime time.Time `json:"mtime,omitzero"`
}

// File is one config file of a generation, relative to the config dir.
// Its content is stored once per distinct content under history/blobs,
// named by its SHA-256, and shared by every generation that has it: a
// reload that changes one file of thousands writes one blob. Records
// written before blobs existed hold the content inline, and still load.
type File struct {
	Path    string `json:"path"`
	SHA256  string `json:"sha256"`
	Content string `json:"content,omitempty"`
}

// Change is one object added, removed or changed by a generation.
type Change struct {
	Env    string `json:"env,omitempty"` // "" for objects outside environments
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"` // added | removed | changed
}

// Store keeps records under dir, the newest keep of them.
type Store struct {
	dir   string
	audit string
	keep  int
	mu    sync.Mutex
	// readOnly: opened by OpenReadOnly; Save and Audit refuse.
	readOnly bool

	// index is what the kept records name, read from disk by the first
	// Save and kept up to date by the later ones, so that a Save costs
	// what its record holds, not the whole history (see Save).
	index *blobIndex
}

// blobIndex counts, for each stored content, the kept records naming it.
// It lives as long as the process: each content's SHA-256 is held once
// (the one refs keeps), however many generations name it, since every
// reload computes them anew and a start reads each record's own: a copy
// per generation held history_keep × files of them (82 bytes a file
// named: 1,000 generations of 2,000 files, 164 MB).
type blobIndex struct {
	gens []uint64            // kept generations, oldest first
	sums map[uint64][]string // the contents each names, as refs holds them
	refs map[string]blobRefs
}

// blobRefs is how many kept records name a content, and its SHA-256 as
// the index holds it.
type blobRefs struct {
	sum string
	n   int
}

func (x *blobIndex) add(gen uint64, files []File) {
	sums := make([]string, len(files))
	for i, f := range files {
		r, ok := x.refs[f.SHA256]
		if !ok {
			r.sum = f.SHA256
		}
		r.n++
		x.refs[r.sum] = r
		sums[i] = r.sum
	}
	x.gens = append(x.gens, gen)
	x.sums[gen] = sums
}

// drop forgets the oldest kept generation and returns the contents that
// no kept record names any more.
func (x *blobIndex) drop() (gen uint64, unused []string) {
	gen, x.gens = x.gens[0], x.gens[1:]
	for _, sum := range x.sums[gen] {
		r := x.refs[sum]
		if r.n--; r.n == 0 {
			delete(x.refs, sum)
			unused = append(unused, sum)
			continue
		}
		x.refs[sum] = r
	}
	delete(x.sums, gen)
	return gen, unused
}

// Open prepares stateDir/history and stateDir/audit.log.
func Open(stateDir string, keep int) (*Store, error) {
	dir := filepath.Join(stateDir, "history")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	if keep < 1 {
		keep = 1
	}
	return &Store{dir: dir, audit: filepath.Join(stateDir, "audit.log"), keep: keep}, nil
}

// OpenReadOnly opens the history under stateDir for reading (edged
// history, diff, rollback), creating nothing: those commands run as the
// operator, often root, and a directory they made would be theirs, where
// the service must write. A history not made yet is empty.
func OpenReadOnly(stateDir string) *Store {
	return &Store{dir: filepath.Join(stateDir, "history"), audit: filepath.Join(stateDir, "audit.log"), keep: 1, readOnly: true}
}

func (s *Store) blobDir() string { return filepath.Join(s.dir, "blobs") }

func (s *Store) blobPath(sum string) string { return filepath.Join(s.blobDir(), sum) }

func (s *Store) path(gen uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("gen-%010d.json", gen))
}

// Last returns the newest recorded generation, 0 when none.
func (s *Store) Last() (uint64, error) {
	gens, err := s.generations()
	if err != nil || len(gens) == 0 {
		return 0, err
	}
	return gens[len(gens)-1], nil
}

func (s *Store) generations() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) && s.readOnly {
		return nil, nil // not made yet (the service makes it)
	}
	if err != nil {
		return nil, err
	}
	var gens []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "gen-") || !strings.HasSuffix(name, ".json") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "gen-"), ".json"), 10, 64)
		if err == nil {
			gens = append(gens, n)
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	return gens, nil
}

// Save writes the contents of rec's files that the store does not hold
// yet, then the record without them (temp file, then rename, each), and
// prunes the records beyond keep and the contents no kept record names.
//
// The first Save of a process reads every kept record, removes the
// contents none of them names (left by a crash between two writes) and
// the temp files of records a crash interrupted, and
// keeps an index of what they name; later ones update the index and touch
// only the files of their own record and of the records they prune.
func (s *Store) Save(rec Record) error {
	if s.readOnly {
		return errors.New("history: opened read-only")
	}
	if len(rec.Files) == 0 {
		return fmt.Errorf("history: generation %d has no files: not recorded", rec.Generation)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.blobDir(), 0o750); err != nil {
		return err
	}
	if s.index == nil {
		x, err := s.loadIndex()
		if err != nil {
			return err
		}
		s.index = x
	}
	files := make([]File, len(rec.Files))
	for i, f := range rec.Files {
		if !validSum(f.SHA256) {
			return fmt.Errorf("history: file %s: %q is not a SHA-256", f.Path, f.SHA256)
		}
		files[i] = File{Path: f.Path, SHA256: f.SHA256}
	}
	contents := rec.Files
	rec.Files = files
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if int64(len(b)) > maxRecordSize {
		// Written, it would be read as a damaged one (readRecord).
		return fmt.Errorf("history: generation %d: its record is %d bytes, more than the %d a record may have: not recorded", rec.Generation, len(b), maxRecordSize)
	}
	for _, f := range contents {
		if s.index.refs[f.SHA256].n == 0 {
			if _, err := os.Stat(s.blobPath(f.SHA256)); errors.Is(err, os.ErrNotExist) {
				if err := atomicfile.WriteFile(s.blobPath(f.SHA256), []byte(f.Content), 0o640); err != nil {
					return err
				}
			}
		}
	}
	if err := atomicfile.WriteFile(s.path(rec.Generation), b, 0o640); err != nil {
		return err
	}
	if n := len(s.index.gens); n > 0 && s.index.gens[n-1] >= rec.Generation {
		// Generations only grow within a process; a record written over
		// (or before) one already kept puts the index out of step.
		s.index = nil
		return nil
	}
	s.index.add(rec.Generation, files)
	for len(s.index.gens) > s.keep {
		gen, unused := s.index.drop()
		_ = os.Remove(s.path(gen))
		for _, sum := range unused {
			_ = os.Remove(s.blobPath(sum))
		}
	}
	return nil
}

// loadIndex reads what the kept records name, removes the records beyond
// keep, the contents that no kept record names and the temp files of
// records a crash left. A kept record that
// does not parse names nothing.
func (s *Store) loadIndex() (*blobIndex, error) {
	gens, err := s.generations()
	if err != nil {
		return nil, err
	}
	// The temp files of records a killed process was writing: only this
	// process writes records, and it is not writing one now (s.mu).
	if left, err := filepath.Glob(filepath.Join(s.dir, ".gen-*.json.tmp-*")); err == nil {
		for _, p := range left {
			_ = os.Remove(p)
		}
	}
	for len(gens) > s.keep {
		_ = os.Remove(s.path(gens[0]))
		gens = gens[1:]
	}
	x := &blobIndex{sums: map[uint64][]string{}, refs: map[string]blobRefs{}}
	for _, g := range gens {
		rec, err := s.read(g)
		var damaged *damagedError
		switch {
		case errors.As(err, &damaged):
			// A damaged record names nothing that can be restored: it
			// is kept as it is (Get says where it is) and pruned in its
			// turn, and the history goes on. Failing here would fail
			// every Save of the process.
			x.add(g, nil)
			continue
		case err != nil:
			return nil, err
		}
		x.add(g, rec.Files)
	}
	ents, err := os.ReadDir(s.blobDir())
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if x.refs[e.Name()].n == 0 {
			_ = os.Remove(filepath.Join(s.blobDir(), e.Name()))
		}
	}
	return x, nil
}

// emptySum is the SHA-256 of no bytes.
const emptySum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func validSum(sum string) bool {
	if len(sum) != sha256.Size*2 {
		return false
	}
	_, err := hex.DecodeString(sum)
	return err == nil
}

// Get reads the record of one generation with its files' contents.
func (s *Store) Get(gen uint64) (*Record, error) {
	rec, err := s.read(gen)
	if err != nil {
		return nil, err
	}
	// What Get returns is what a rollback writes: a content that does not
	// match its file's SHA-256 is an error, wherever it is held.
	for i, f := range rec.Files {
		if !validSum(f.SHA256) {
			return nil, fmt.Errorf("generation %d: %s: the sha256 of %s is not a SHA-256 (%q): the record is damaged", gen, s.path(gen), f.Path, f.SHA256)
		}
		// An empty file's content is "" whatever the record's format:
		// records written before blobs hold it inline as "", and have
		// no blob for it.
		if f.SHA256 == emptySum {
			continue
		}
		if f.Content != "" {
			// Held inline, by a record written before blobs.
			if config.SHA256Hex([]byte(f.Content)) != f.SHA256 {
				return nil, fmt.Errorf("generation %d: content of %s is damaged (the one %s holds does not match its hash)", gen, f.Path, s.path(gen))
			}
			continue
		}
		// A content is a configuration file's, read as the loader reads
		// one: a named pipe in its place is not waited on, nor a larger
		// file read whole.
		b, err := config.ReadFile(s.blobPath(f.SHA256))
		if err != nil {
			return nil, fmt.Errorf("generation %d: content of %s: %w", gen, f.Path, err)
		}
		if config.SHA256Hex(b) != f.SHA256 {
			return nil, fmt.Errorf("generation %d: content of %s is damaged (%s does not match its hash)", gen, f.Path, s.blobPath(f.SHA256))
		}
		rec.Files[i].Content = string(b)
	}
	return rec, nil
}

// Holds reports whether the store holds a content, by its SHA-256: a kept
// generation has it.
func (s *Store) Holds(sum string) bool {
	if !validSum(sum) {
		return false
	}
	_, err := os.Stat(s.blobPath(sum))
	return err == nil
}

// Meta reads the record of one generation without its files' contents.
func (s *Store) Meta(gen uint64) (*Record, error) { return s.read(gen) }

// maxRecordSize bounds a record (gen-N.json) as read and as written. A
// record lists its files (path and SHA-256), the files it changed (with
// owner and time) and the objects it changed: about 60 MiB for the
// 100,000 files a configuration may have, with paths of 150 bytes, and
// as many objects. A var: a test lowers it.
var maxRecordSize int64 = 256 << 20

// damagedError is a record that cannot be one: not a regular file,
// larger than maxRecordSize, or not parsing. It is one lost generation:
// the others are listed and read, and the history goes on.
type damagedError struct{ err error }

func (e *damagedError) Error() string { return e.err.Error() }
func (e *damagedError) Unwrap() error { return e.err }

// readRecord reads the record file at path. It is read as the loader
// reads a configuration file (config.ReadRegular): a named pipe in its
// place is not waited on for a writer, a device (a link to /dev/zero) is
// not read without end, and no more than maxRecordSize is read.
func readRecord(path string) (*Record, error) {
	b, err := config.ReadRegular(path, maxRecordSize)
	if errors.Is(err, config.ErrNotRegular) || errors.Is(err, config.ErrTooLarge) {
		return nil, &damagedError{err}
	}
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, &damagedError{fmt.Errorf("%s: %w", path, err)}
	}
	return &rec, nil
}

// read reads a record as stored: contents kept apart are not filled in.
func (s *Store) read(gen uint64) (*Record, error) {
	rec, err := readRecord(s.path(gen))
	if errors.Is(err, os.ErrNotExist) {
		// What is there, not keep: the CLI opens the history with the
		// default keep, not the server's history_keep.
		held := "it is empty"
		if gens, _ := s.generations(); len(gens) > 0 {
			held = fmt.Sprintf("it holds %d to %d", gens[0], gens[len(gens)-1])
		}
		return nil, fmt.Errorf("generation %d is not in the history (%s)", gen, held)
	}
	return rec, err
}

// List returns every kept record, oldest first (see Walk).
func (s *Store) List() (recs []*Record, damaged []error, err error) {
	damaged, err = s.Walk(func(rec *Record) error {
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return recs, damaged, nil
}

// Walk calls fn with every kept record, oldest first, read one at a time:
// a caller that keeps none of them (edged history) holds one record's
// memory, not the whole history's (history_keep records of every file's
// name and hash). A record that does not parse is one lost generation, as
// for Save: the others are walked, and damaged says, for each such
// record, which and where it is. A record the running edged prunes while
// Walk reads is left out. fn's error ends the walk and is returned.
func (s *Store) Walk(fn func(*Record) error) (damaged []error, err error) {
	gens, err := s.generations()
	if err != nil {
		return nil, err
	}
	for _, g := range gens {
		rec, err := readRecord(s.path(g))
		var bad *damagedError
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case errors.As(err, &bad):
			damaged = append(damaged, fmt.Errorf("generation %d cannot be read: %w", g, err))
			continue
		case err != nil:
			return damaged, err
		}
		if err := fn(rec); err != nil {
			return damaged, err
		}
	}
	return damaged, nil
}

// endsLine reports whether the regular file at path, of size bytes, ends
// with a newline (read through a descriptor of its own: the writer's is
// write only).
func endsLine(path string, size int64) bool {
	r, err := os.Open(path)
	if err != nil {
		return true
	}
	defer r.Close()
	var last [1]byte
	_, err = r.ReadAt(last[:], size-1)
	return err != nil || last[0] == '\n'
}

// Audit appends one JSON line to the audit log and syncs it, with the
// controls encoding/json leaves as they are (C1, bidirectional) escaped.
func (s *Store) Audit(v any) error {
	if s.readOnly {
		return errors.New("history: opened read-only")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// Read with tail in a terminal; its lines name files (termsafe).
	b = termsafe.JSON(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Write only: opened for reading too, a named pipe (a log shipper's)
	// would be its own reader, and take lines no one reads.
	f, err := os.OpenFile(s.audit, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	line := append(b, '\n')
	size := int64(-1)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
		// A line a crash cut short (or one written before writes were
		// undone, below) ends here, so that this one starts a line.
		if size > 0 && !endsLine(s.audit, size) {
			line = append([]byte{'\n'}, line...)
		}
	}
	_, err = f.Write(line)
	if err != nil && size >= 0 {
		// A write cut short (a full disk, the file size limit) left the
		// line's start in the file: the next line would be glued to it,
		// and the trail would lose that one too. The line is not written.
		_ = f.Truncate(size)
	}
	if err == nil && size >= 0 {
		// Synced as the history's records are: the trail of who changed
		// what must survive a crash just after the change (one line per
		// reload or control action, never per request). A pipe has
		// nothing to sync (EINVAL).
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// FilesOf lists the loaded files of a config for a record: paths relative
// to dir, with the content that was loaded (not what is on disk by now).
func FilesOf(dir string, loaded []config.File) ([]File, error) {
	out := make([]File, 0, len(loaded))
	for _, f := range loaded {
		rel, err := filepath.Rel(dir, f.Path)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Path: filepath.ToSlash(rel), SHA256: f.SHA256, Content: string(f.Data)})
	}
	return out, nil
}

// Restored is what Restore changed.
type Restored struct {
	Written    []string // the files written
	MovedAside []string // the files rec does not have, as moved aside
	Kept       []Copy   // what files written held, where held does not
	// The temp files a promote or rollback killed while writing one of
	// rec's files left beside it, removed (atomicfile.RemoveLeftTempsIn).
	Removed []string
}

// Copy is a file's content before Restore replaced it, kept beside it.
type Copy struct{ File, Copy string }

// Restore writes the files of rec into dir, each through a temp file and a
// rename so the watcher never sees half a file, with the mode and owner of
// the file it replaces (atomicfile.ReplaceFileIn). Current .toml files that
// the record does not have are moved aside to a dot-name (which the loader
// skips), never deleted. A file it replaces whose content held (by its
// SHA-256; nil: none) says the history does not have is kept under such a
// name too: an edit not applied yet is no generation's, and would
// otherwise be lost.
//
// It follows no symbolic link below dir that sits in a directory others
// may write to (see openDir), and then changes nothing; nor does it
// change anything when one of the files could not be written with its
// owner, or moved aside (atomicfile.CanReplace).
func Restore(rec *Record, dir string, current []string, held func(sum string) bool) (Restored, error) {
	var done Restored
	if len(rec.Files) == 0 {
		// Moving everything aside for nothing would leave an empty conf.d.
		return done, fmt.Errorf("generation %d has no files to restore", rec.Generation)
	}
	keep := map[string]bool{}
	for _, f := range rec.Files {
		clean := filepath.Clean(filepath.FromSlash(f.Path))
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
			return done, fmt.Errorf("generation %d: file path %q leaves the config directory", rec.Generation, f.Path)
		}
		// A generation holds the files the loader read: .toml files
		// outside dot-directories, never a key or a certificate. A record
		// naming another is damaged, and writing it (as root, often)
		// would put any file anywhere under dir.
		if !loadable(clean) {
			return done, fmt.Errorf("generation %d: file path %q is not a configuration file (a *.toml file, in no dot-directory, as the loader reads): the record is damaged", rec.Generation, f.Path)
		}
		keep[clean] = true
	}
	// Before anything changes: no path goes through a link that someone
	// other than the caller may have put there. A directory not made yet
	// is made below (and followed no link to then).
	for _, f := range rec.Files {
		if err := checkDir(dir, filepath.Dir(filepath.Clean(filepath.FromSlash(f.Path)))); err != nil {
			return done, fmt.Errorf("generation %d: %w", rec.Generation, err)
		}
	}
	for _, p := range current {
		rel, err := filepath.Rel(dir, p)
		if err != nil || keep[rel] {
			continue
		}
		if err := checkDir(dir, filepath.Dir(rel)); err != nil {
			return done, fmt.Errorf("generation %d: %w", rec.Generation, err)
		}
	}
	// Every file written or moved aside must be: a file whose owner this
	// user may not give back (the service's, without sudo), or a
	// directory it may not write to, stops the rollback here rather
	// than half way, with some files moved aside and some written.
	for _, f := range rec.Files {
		target := filepath.Join(dir, filepath.FromSlash(f.Path))
		if b, err := config.ReadFile(target); err == nil && string(b) == f.Content {
			continue
		}
		if err := atomicfile.CanReplace(target); err != nil {
			return done, err
		}
	}
	for _, p := range current {
		if rel, err := filepath.Rel(dir, p); err == nil && !keep[rel] {
			if err := atomicfile.CanRenameIn(filepath.Dir(p)); err != nil {
				return done, err
			}
		}
	}
	// Directories first: one that cannot be made stops the rollback
	// before any file is written or moved aside (the temp files a killed
	// writer left are removed on the way). Each is made in the
	// directory the walk holds open, as every file below is written in
	// the one it holds: a writer of a home renaming a link over one of
	// its directories between a check and a write by name would have
	// root write wherever the link leads.
	for _, f := range rec.Files {
		clean := filepath.Clean(filepath.FromSlash(f.Path))
		d, err := openDir(dir, filepath.Dir(clean), true)
		if err != nil {
			return done, fmt.Errorf("generation %d: %w", rec.Generation, err)
		}
		removed, err := atomicfile.RemoveLeftTempsIn(d, filepath.Base(clean))
		d.Close()
		done.Removed = append(done.Removed, removed...)
		if err != nil {
			return done, err
		}
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	// The generation's files first, the newer ones aside after: the
	// watcher of the running edged may reload between two steps, and
	// must then find an object that moved from a newer file back into
	// one of the generation's in both (which does not load: the running
	// edged keeps serving), not in neither, which would load and drop
	// its routes until the next step.
	for _, f := range rec.Files {
		clean := filepath.Clean(filepath.FromSlash(f.Path))
		d, err := openDir(dir, filepath.Dir(clean), false)
		if err != nil {
			return done, fmt.Errorf("generation %d: %w", rec.Generation, err)
		}
		err = restoreFile(d, filepath.Base(clean), f.Content, stamp, held, &done)
		d.Close()
		if err != nil {
			return done, err
		}
	}
	for _, p := range current {
		rel, err := filepath.Rel(dir, p)
		if err != nil || keep[rel] {
			continue
		}
		d, err := openDir(dir, filepath.Dir(rel), false)
		if err != nil {
			return done, fmt.Errorf("generation %d: %w", rec.Generation, err)
		}
		aside := asideName(d, filepath.Base(rel), stamp)
		// Synced like the files written: a crash must not bring back a
		// file the rollback removed (atomicfile.RenameIn).
		err = atomicfile.RenameIn(d, filepath.Base(rel), aside)
		d.Close()
		if err != nil {
			return done, err
		}
		done.MovedAside = append(done.MovedAside, filepath.Join(filepath.Dir(p), aside))
		if testHookChanged != nil {
			testHookChanged()
		}
	}
	return done, nil
}

// restoreFile writes content as name in the directory d, unless it holds
// it already, keeping what it held under a second name when held does not
// say the history has it. The file is replaced only if it still holds what
// was read (or is still missing) at the rename: an editor's save between
// the read and the rename (the temp file is written and synced in
// between) is read again, and kept in its turn, rather than replaced
// unseen.
func restoreFile(d *os.File, name, content, stamp string, held func(sum string) bool, done *Restored) error {
	target := filepath.Join(d.Name(), name)
	for try := 1; ; try++ {
		var b []byte
		f, err := openIn(d, name, false)
		missing := errors.Is(err, fs.ErrNotExist)
		if err == nil {
			b, err = config.ReadOpened(f, config.MaxFileSize)
			f.Close()
		}
		if err == nil && string(b) == content {
			return nil
		}
		if err == nil && (held == nil || !held(config.SHA256Hex(b))) {
			// A second name for the file replaced: it keeps the content,
			// mode and owner, and the rename of the replacement syncs the
			// directory that holds both.
			c := asideName(d, name, stamp)
			if err := atomicfile.LinkIn(d, name, c); err != nil {
				return fmt.Errorf("%s: keeping what it holds, which no generation has: %w", target, err)
			}
			done.Kept = append(done.Kept, Copy{File: target, Copy: filepath.Join(d.Name(), c)})
		}
		if testHookRead != nil {
			testHookRead(target)
		}
		// The service must still read it: the mode and owner of the file
		// replaced (or of its directory), not those of whoever runs this.
		switch {
		case err == nil:
			err = atomicfile.ReplaceFileIfIn(d, name, b, []byte(content))
		case missing:
			err = atomicfile.ReplaceFileIfAbsentIn(d, name, []byte(content))
		default:
			// Not read (larger than a configuration file may be, or not
			// readable by this user): replaced as it is, or refused
			// with the reason (a link, a directory).
			err = atomicfile.ReplaceFileIn(d, name, []byte(content))
		}
		if errors.Is(err, atomicfile.ErrChanged) && try < restoreTries {
			continue
		}
		if errors.Is(err, atomicfile.ErrChanged) {
			return fmt.Errorf("%w, %d times in a row: something keeps writing it; stop that and run the rollback again", err, try)
		}
		if err != nil {
			return err
		}
		done.Written = append(done.Written, target)
		if testHookChanged != nil {
			testHookChanged()
		}
		return nil
	}
}

// restoreTries is how many times Restore reads and writes a file that
// keeps changing between its read and its rename before it gives up.
const restoreTries = 3

// loadable reports whether the loader would read the file at rel, a clean
// path below the config directory: a configuration file's name, and no
// directory on the way that starts with "." (which the loader skips).
func loadable(rel string) bool {
	parts := strings.Split(rel, string(filepath.Separator))
	for _, d := range parts[:len(parts)-1] {
		if strings.HasPrefix(d, ".") {
			return false
		}
	}
	return config.IsConfigName(parts[len(parts)-1])
}

// testHookRead, when set by a test, runs when Restore has read a file
// it is to replace, and kept it, before it writes: where an editor's save
// may come.
var testHookRead func(path string)

// testHookChanged, when set by a test, runs after each file Restore
// writes or moves aside: where a reload by the watcher may come.
var testHookChanged func()

// asideName is the dot-name (which the loader skips) a rollback at stamp
// gives name's content, in the directory d. A name an earlier rollback of
// the same second took is not used: renaming over it would delete the
// copy it kept.
func asideName(d *os.File, name, stamp string) string {
	base := "." + name + ".rolled-back-" + stamp
	aside := base
	for n := 2; ; n++ {
		if !atomicfile.ExistsIn(d, aside) {
			return aside // free (or not to be known: the rename says why)
		}
		aside = fmt.Sprintf("%s-%d", base, n)
	}
}

// openDir opens the directory rel below dir for a rollback to write in,
// following no symbolic link that sits in a directory someone other than
// this process's user and root may write to (OpenDirNoForeignLink),
// making what is missing with mkdir: an environment's home is writable
// by its operators, and a rollback runs with sudo, so a link one of them
// put in place of a subdirectory would have root write the generation's
// files, and move the .toml files it finds aside, wherever the link
// points (another environment's home, /etc). A link in a directory only
// the caller or root may change is the operator's own layout, and is
// followed.
func openDir(dir, rel string, mkdir bool) (*os.File, error) {
	d, err := OpenDirNoForeignLink(dir, rel, mkdir)
	var link *ForeignLinkError
	if errors.As(err, &link) {
		return nil, fmt.Errorf("%w: a rollback follows no such link, as it could lead anywhere; put the directory itself there, or %s",
			err, link.Remedy())
	}
	return d, err
}

// checkDir is openDir (making nothing) for a check before anything
// changes: a directory not there yet passes (it is made, following
// nothing).
func checkDir(dir, rel string) error {
	d, err := openDir(dir, rel, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return d.Close()
}

// ForeignLinkError is a symbolic link below the config directory that
// sits in a directory someone other than this process's user and root
// may write to (see OpenNoForeignLink).
type ForeignLinkError struct {
	Link, Dir    string      // the link, and the directory holding it
	Mode         os.FileMode // the directory's permissions
	Owner        string      // the directory's owner
	ForeignOwner bool        // that owner is neither root nor this process's user
}

func (e *ForeignLinkError) Error() string {
	return fmt.Sprintf("%s is a symbolic link in %s, which others may write to (mode %04o, owner %s)", e.Link, e.Dir, e.Mode, e.Owner)
}

// Remedy says what makes Dir a directory whose links are followed: one
// that only its owner may write to, an owner that is root or the user
// running the command. A directory of mode 0755 whose owner is another
// user is to be given away, not made "writable by its owner only": it
// is already.
func (e *ForeignLinkError) Remedy() string {
	const byUs = "owned by root or by the user running this command (it is %s's)"
	switch shared := e.Mode&0o022 != 0; {
	case shared && e.ForeignOwner:
		return fmt.Sprintf("make %s writable by its owner only, and "+byUs, e.Dir, e.Owner)
	case e.ForeignOwner:
		return fmt.Sprintf("have %s "+byUs, e.Dir, e.Owner)
	}
	return fmt.Sprintf("make %s writable by its owner only", e.Dir)
}

// foreignLinkError is the *ForeignLinkError of link in dir, which fi
// describes.
func foreignLinkError(link, dir string, fi os.FileInfo) *ForeignLinkError {
	return &ForeignLinkError{Link: link, Dir: dir, Mode: fi.Mode().Perm(), Owner: ownerOf(fi), ForeignOwner: foreignOwner(fi)}
}

// othersMayWrite reports whether someone other than this process's user
// and root may add or rename entries in the directory fi describes.
func othersMayWrite(fi os.FileInfo) bool {
	return fi.Mode().Perm()&0o022 != 0 || foreignOwner(fi)
}

// foreignOwner reports whether the owner of what fi describes is neither
// root nor this process's user.
func foreignOwner(fi os.FileInfo) bool {
	uid, _, ok := owner.IDs(fi)
	return ok && uid != 0 && int(uid) != os.Geteuid()
}

func ownerOf(fi os.FileInfo) string {
	if uid, _, ok := owner.IDs(fi); ok {
		return owner.User(uid)
	}
	return "unknown"
}
