package galleryfeed

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/faregate/faregate/fare"
)

func descriptorLE(d [fare.FaceDim]float32) []byte {
	b := make([]byte, 0, 4*fare.FaceDim)
	for _, v := range d {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func TestCopyFiles(t *testing.T) {
	entries := []storedEntry{{key: fare.FaceKeyToken{1}, signed: []byte("entry one")}, {key: fare.FaceKeyToken{2}, signed: []byte("entry two")}}
	tombs := map[fare.FaceKeyToken]uint64{{3}: 7}
	b := encodeEntries(entries, tombs)
	got, gotTombs, err := decodeEntries(b)
	if err != nil || len(got) != 2 || !bytes.Equal(got[1].signed, entries[1].signed) || gotTombs[fare.FaceKeyToken{3}] != 7 {
		t.Fatalf("entries round trip: %v %v %v", got, gotTombs, err)
	}
	keys := []ed25519.PublicKey{clearingKey.Public().(ed25519.PublicKey)}
	macKey := []byte("this gate's mac key")
	hb := encodeHead([]byte("head"), keys, keys, macKey)
	signed, trusted, retired, macOK, err := decodeHead(hb, macKey)
	if err != nil || string(signed) != "head" || len(trusted) != 1 || len(retired) != 1 || !trusted[0].Equal(keys[0]) || !macOK {
		t.Fatalf("head round trip: %v (mac ok %v)", err, macOK)
	}
	// Under another key (a file this gate did not write), or in an earlier
	// build's format 1 (no mac), the head file reads, its mac does not.
	if _, _, _, macOK, err := decodeHead(hb, []byte("another gate's")); err != nil || macOK {
		t.Errorf("a head file under another key: mac ok %v, %v", macOK, err)
	}
	old := headFields([]byte("head"), keys, nil)
	old[len(headMagic)] = copyFormat
	oldSum := sha256.Sum256(old)
	if _, trusted, _, macOK, err := decodeHead(append(old, oldSum[:]...), macKey); err != nil || macOK || len(trusted) != 1 {
		t.Errorf("a format 1 head file: %d trusted, mac ok %v, %v", len(trusted), macOK, err)
	}
	for n := range len(b) {
		if _, _, err := decodeEntries(b[:n]); err == nil {
			t.Fatalf("entries: %d of %d bytes decoded", n, len(b))
		}
	}
	flipped := bytes.Clone(b)
	flipped[10] ^= 1
	if _, _, err := decodeEntries(flipped); !errors.Is(err, errCopy) {
		t.Fatalf("a flipped bit: %v", err)
	}

	// writeFile replaces the file and leaves no .new; readNewest prefers a
	// whole .new (a write whose rename was cut short) and falls back to the
	// older file when .new is not whole.
	dir := t.TempDir()
	p := filepath.Join(dir, entriesFile)
	check := func(b []byte) error { _, _, err := decodeEntries(b); return err }
	if err := writeFile(p, b, true); err != nil {
		t.Fatal(err)
	}
	newer := encodeEntries(entries[:1], nil)
	if err := writeFile(p, newer, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p + newSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf(".new left: %v", err)
	}
	if got, ok, err := readNewest(p, check); err != nil || !ok || !bytes.Equal(got, newer) {
		t.Fatalf("read after write: %v %v", ok, err)
	}
	if err := os.WriteFile(p+newSuffix, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := readNewest(p, check); !bytes.Equal(got, b) {
		t.Fatal("a whole .new not preferred")
	}
	if err := os.WriteFile(p+newSuffix, b[:20], 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := readNewest(p, check); !bytes.Equal(got, newer) {
		t.Fatal("a cut .new not passed over")
	}
}

func FuzzDecodeEntries(f *testing.F) {
	f.Add(encodeEntries([]storedEntry{{key: fare.FaceKeyToken{1}, signed: []byte("x")}}, map[fare.FaceKeyToken]uint64{{2}: 3}))
	f.Add([]byte("FGFE\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, tombs, err := decodeEntries(b)
		if err != nil {
			return
		}
		// Tombstones are a map: only files with at most one re-encode
		// byte for byte.
		if len(tombs) <= 1 && !bytes.Equal(encodeEntries(entries, tombs), b) {
			t.Fatal("a decoded copy does not encode to its input")
		}
	})
}

func FuzzDecodeHead(f *testing.F) {
	macKey := []byte("fuzz")
	f.Add(encodeHead([]byte("head"), []ed25519.PublicKey{clearingKey.Public().(ed25519.PublicKey)}, nil, macKey))
	f.Add([]byte("FGFH\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		signed, trusted, retired, macOK, err := decodeHead(b, macKey)
		if err != nil {
			return
		}
		if macOK && !bytes.Equal(encodeHead(signed, trusted, retired, macKey), b) {
			t.Fatal("a decoded head whose mac verifies does not encode to its input")
		}
	})
}
