package journeys

// ForgetMemo drops what the day remembers of its journeys' fares between
// repricings (a few kilobytes a day): a cache that keeps many days keeps
// them without it, and the next repricing rebuilds it.
func (d *Day) ForgetMemo() { d.memo, d.memoFeed = nil, nil }
