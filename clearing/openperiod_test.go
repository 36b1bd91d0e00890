package clearing

import (
	"slices"
	"testing"
)

// TestSealFromMemoryMatchesTheStore: a period whose events were all
// applied since the last seal is sealed from the applying goroutine's copy
// of its leaves and nets; the batch's root and per-operator nets are those
// read back from the store (the audit's way). A period begun before a
// restart (no copy) is sealed from the store, and the copy is kept again
// from the next period on.
func TestSealFromMemoryMatchesTheStore(t *testing.T) {
	f := newAuditFixture(t) // three batches: the first sealed from the store, the others from memory
	seal := func(what string, n int, fromMemory bool) {
		t.Helper()
		if kept := f.st.open.ok && f.st.open.from == f.cur.period.StartIndex; kept != fromMemory {
			t.Fatalf("%s: copy kept %v, want %v", what, kept, fromMemory)
		}
		f.seal(t, n)
		recs, err := f.st.Batches(1, 100)
		if err != nil {
			t.Fatal(err)
		}
		rec := recs[len(recs)-1]
		tree, amounts, _, err := f.st.batchContents(rec.StartIndex, rec.EndIndex)
		if err != nil {
			t.Fatal(err)
		}
		if rec.EventCount != uint64(n) || rec.Root != tree.Root() || !slices.Equal(rec.Amounts, amounts) {
			t.Fatalf("%s: batch %d of %d events, root %x nets %v; the store's %x %v", what, rec.ID, rec.EventCount, rec.Root, rec.Amounts, tree.Root(), amounts)
		}
		if !f.st.open.covers(rec.EndIndex, f.cur.nextApply) {
			t.Fatalf("%s: the next period's copy is not kept", what)
		}
	}
	seal("one batch", 40, true)
	f.st.open = openPeriod{} // no copy, as after a restart in the middle of a period
	seal("after a restart", 25, false)
	seal("the period after", 7, true)
	if rep := f.audit(t); !rep.Clean() {
		t.Fatalf("audit: %+v", rep)
	}
}
