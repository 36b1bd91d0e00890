package clearing_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faregate/faregate/clearing"
)

// TestFeedVersionFollowsLinks: a feed directory of links to its files has
// the version of the files they lead to, so a change of prices behind the
// links is a new version (a code review saw such a feed versioned as the
// hash of nothing, the same whatever its prices).
func TestFeedVersionFollowsLinks(t *testing.T) {
	src := "journeys/testdata/city"
	plain, err := clearing.FeedVersionOfPath(src)
	if err != nil {
		t.Fatal(err)
	}
	links := func(target string) string {
		t.Helper()
		dir := t.TempDir()
		ents, err := os.ReadDir(target)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			abs, err := filepath.Abs(filepath.Join(target, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(abs, filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	linked, err := clearing.FeedVersionOfPath(links(src))
	if err != nil || linked != plain {
		t.Errorf("a feed of links: %s, %v; want the files' version %s", linked, err, plain)
	}
	dearer := filepath.Join(t.TempDir(), "city")
	if err := os.CopyFS(dearer, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dearer, "fare_products.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dearer, "fare_products.txt"), []byte(strings.Replace(string(b), "3.00,EUR", "9.00,EUR", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := clearing.FeedVersionOfPath(links(dearer))
	if err != nil || changed == plain {
		t.Errorf("links to a feed with other prices: %s, %v; want another version than %s", changed, err, plain)
	}
}
