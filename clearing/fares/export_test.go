package fares

// WithoutDenseRules returns a copy of f that finds fare_leg_rules.txt rows
// through its map index only, as a feed too large for the dense table does.
func WithoutDenseRules(f *Feed) *Feed {
	g := *f
	g.ruleTable, g.ruleList = nil, nil
	return &g
}
