// Package templates stores face templates (descriptors, never images) with
// the consent they were enrolled under, encrypted at rest with Badger's
// AES encryption, and erases a subject completely on request.
package templates

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/biometrics/gallery"
)

// KeyEnv names the environment variable holding the store's key.
const KeyEnv = "FAREGATE_GALLERY_KEY"

// Key prefixes. Every key of a subject ends in a 0 byte after the subject
// id, so that one subject's prefix never matches another ("al" vs "alice").
const (
	templatePrefix = "t/"
	consentPrefix  = "c/"
	seqKey         = "s/template"
)

// Errors.
var (
	ErrNoKey      = errors.New("templates: no encryption key (use --key-file or $" + KeyEnv + ")")
	ErrBadKey     = errors.New("templates: key must be 32 bytes, raw or as 64 hex digits")
	ErrNoConsent  = errors.New("templates: consent record required")
	ErrBadSubject = errors.New("templates: invalid subject id")
	ErrNotFound   = errors.New("templates: subject not enrolled")
)

// ParseKey accepts 64 hex digits (surrounding space ignored) or 32 raw bytes.
func ParseKey(b []byte) ([]byte, error) {
	if s := strings.TrimSpace(string(b)); len(s) == 64 {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	if len(b) == 32 {
		return bytes.Clone(b), nil
	}
	return nil, ErrBadKey
}

// LoadKey reads the key from file if it is not empty, else from $KeyEnv.
func LoadKey(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("templates: key file: %w", err)
		}
		k, err := ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", file, err)
		}
		return k, nil
	}
	if env := os.Getenv(KeyEnv); env != "" {
		k, err := ParseKey([]byte(env))
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", KeyEnv, err)
		}
		return k, nil
	}
	return nil, ErrNoKey
}

// Store is an encrypted template store. It is safe for concurrent use.
type Store struct {
	db  *badger.DB
	seq *badger.Sequence
	log *slog.Logger
}

// Options configures Open.
type Options struct {
	// Logger receives Badger's warnings and errors; nil means slog.Default().
	Logger *slog.Logger
}

// Open opens (creating if needed) the store in dir, encrypted with key
// (32 bytes: AES-256). Opening an existing store with another key fails.
func Open(dir string, key []byte, o Options) (*Store, error) {
	if len(key) != 32 {
		return nil, ErrBadKey
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	opts := badger.DefaultOptions(dir).
		WithEncryptionKey(key).
		// Badger requires a block index cache when encryption is on.
		WithIndexCacheSize(16 << 20).
		// Enrolment is rare and must survive a crash once acknowledged.
		WithSyncWrites(true).
		WithLogger(badgerLogger{log}).
		// Templates are small; keep memory modest on a terminal.
		WithMemTableSize(8 << 20).
		WithNumVersionsToKeep(1)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("templates: open %s: %w", dir, err)
	}
	seq, err := db.GetSequence([]byte(seqKey), 64)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("templates: sequence: %w", err)
	}
	return &Store{db: db, seq: seq, log: log}, nil
}

// Close releases the store.
func (s *Store) Close() error {
	err := s.seq.Release()
	return errors.Join(err, s.db.Close())
}

func checkSubject(id string) error {
	if id == "" || len(id) > 256 || strings.ContainsRune(id, 0) {
		return fmt.Errorf("%w: %q", ErrBadSubject, id)
	}
	return nil
}

func subjectPrefix(prefix, subject string) []byte {
	return append([]byte(prefix+subject), 0)
}

func templateKey(subject string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(subjectPrefix(templatePrefix, subject), seq)
}

// Enrol stores descriptors for subject under consent, in one transaction.
// It adds to any templates the subject already has and replaces the
// consent record.
func (s *Store) Enrol(ctx context.Context, subject string, consent Consent, modelID string, descs ...[Dim]float32) ([]Template, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	if err := consent.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoConsent, err)
	}
	if len(descs) == 0 {
		return nil, errors.New("templates: no descriptors to enrol")
	}
	for i := range descs {
		if j := slices.Index(descs[:i], descs[i]); j >= 0 {
			// One image given three times is one template: the operating
			// points assume separate captures (an outside review).
			return nil, fmt.Errorf("templates: descriptor %d is descriptor %d again: the same capture counts once; enrol separate captures", i+1, j+1)
		}
	}
	if modelID == "" {
		return nil, errors.New("templates: model id required")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	ts := make([]Template, len(descs))
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(subjectPrefix(consentPrefix, subject), encodeConsent(consent)); err != nil {
			return err
		}
		for i, d := range descs {
			seq, err := s.seq.Next()
			if err != nil {
				return err
			}
			ts[i] = Template{Subject: subject, Seq: seq, Descriptor: d, ModelID: modelID, Created: now}
			// A fresh key slice per Set: Badger keeps it until commit.
			if err := txn.Set(templateKey(subject, seq), encodeTemplate(ts[i])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("templates: enrol %q: %w", subject, err)
	}
	s.log.Info("face templates enrolled", "subject", subject, "templates", len(descs)) // the consent record stays in the store, erased with the subject; logs outlive an erasure
	return ts, nil
}

// Consent returns subject's consent record.
func (s *Store) Consent(ctx context.Context, subject string) (Consent, error) {
	if err := checkSubject(subject); err != nil {
		return Consent{}, err
	}
	var c Consent
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(subjectPrefix(consentPrefix, subject))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			c, err = decodeConsent(v)
			return err
		})
	})
	if err != nil {
		return Consent{}, fmt.Errorf("templates: consent of %q: %w", subject, err)
	}
	return c, nil
}

// Templates returns subject's templates.
func (s *Store) Templates(ctx context.Context, subject string) ([]Template, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	var ts []Template
	err := s.scan(ctx, subjectPrefix(templatePrefix, subject), func(t Template) error {
		ts = append(ts, t)
		return nil
	})
	return ts, err
}

// Each calls fn for every template, in key order.
func (s *Store) Each(ctx context.Context, fn func(Template) error) error {
	return s.scan(ctx, []byte(templatePrefix), fn)
}

func (s *Store) scan(ctx context.Context, prefix []byte, fn func(Template) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			key := item.Key()
			rest := key[len(templatePrefix):]
			i := bytes.IndexByte(rest, 0)
			if i < 0 || len(rest)-i-1 != 8 {
				return fmt.Errorf("templates: %w: key %q", errRecord, key)
			}
			var t Template
			err := item.Value(func(v []byte) error {
				var err error
				t, err = decodeTemplate(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("templates: key %q: %w", key, err)
			}
			t.Subject, t.Seq = string(rest[:i]), binary.BigEndian.Uint64(rest[i+1:])
			if err := fn(t); err != nil {
				return err
			}
		}
		return nil
	})
}

// Forget erases subject: the templates and the consent record. Badger's
// DropPrefix flushes the memtable and rewrites the tables that held the
// keys, so no template survives in the store's files (beyond freed disk
// blocks, which only ever held ciphertext). It returns how many templates
// were erased; erasing an unknown subject is not an error.
func (s *Store) Forget(ctx context.Context, subject string) (int, error) {
	ts, err := s.Templates(ctx, subject)
	if err != nil {
		return 0, err
	}
	if err := s.db.DropPrefix(subjectPrefix(templatePrefix, subject), subjectPrefix(consentPrefix, subject)); err != nil {
		return 0, fmt.Errorf("templates: forget %q: %w", subject, err)
	}
	s.log.Info("face templates erased", "subject", subject, "templates", len(ts))
	return len(ts), nil
}

// LoadGallery builds a gallery of every template made by modelID. Templates
// of another pipeline are an error: mixing them would corrupt matching.
func (s *Store) LoadGallery(ctx context.Context, modelID string) (*gallery.Gallery, error) {
	g := gallery.New()
	err := s.Each(ctx, func(t Template) error {
		if t.ModelID != modelID {
			return fmt.Errorf("templates: subject %q enrolled with %q, recognizer is %q", t.Subject, t.ModelID, modelID)
		}
		return g.Add(t.Subject, t.Descriptor)
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// badgerLogger sends Badger's log to slog; its Info and Debug chatter is
// dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Infof(string, ...any)  {}
func (b badgerLogger) Debugf(string, ...any) {}
