// Package fares prices transit journeys from a city's GTFS Fares v2 feed:
// leg rules, effective fare legs (join rules), transfers, rider categories
// and fare media, plus two things GTFS does not have: fare capping and the
// apportionment of a journey's price between operators. It also turns a
// passenger's taps into journeys.
//
// The package does no I/O. The gtfs sub-package reads a feed directory or
// zip and calls NewFeed, which validates the rows and builds an immutable,
// pre-indexed Feed. Pricing (Feed.Price, Feed.PriceInto) works on interned
// IDs and, with a reused Fare, does not allocate. Money is int64 minor units
// of an ISO 4217 currency (Money, ParseAmount, FormatAmount), never floats.
//
// # Entry points
//
//   - gtfs.LoadPath / gtfs.Load / gtfs.LoadZip: load a feed.
//   - Feed.Settle: what clearing calls for one passenger: taps in, and per
//     journey the fare, the capped charge and the per-agency shares out. A
//     journey here is a chain of legs joined by transfers: legs within the
//     transfer window that no transfer rule joins are separate fares.
//   - Feed.BuildJourneys, Feed.Price, Capper.Apply, Feed.Apportion: the
//     steps of Settle, usable on their own.
//   - Feed.SettleMemo and Feed.SettleInto: Settle for repricing a
//     passenger's day tap after tap, remembering journeys' fares in a
//     JourneyMemo; SettleInto works in a caller's Scratch (and a Capper
//     reused through Capper.Reset), so that repricing allocates only what
//     the memo keeps of a journey it has not seen.
//
// # Reading the GTFS reference, and the choices made where it is open
//
// Leg rules. A leg (or effective fare leg) is matched on network, departure
// area, arrival area, departure and arrival timeframes, as the reference
// says. The presence of the rule_priority column decides what an empty
// field means: with the column, empty network_id, from_area_id or
// to_area_id match anything; without it, an empty field matches a leg only
// when no row of fare_leg_rules.txt lists any of the leg's values in that
// column (the reference's "all values excluding the ones listed"). Empty
// timeframe fields always mean "any time". A stop in several areas matches
// a rule naming any of them. A platform with no stop_areas row of its own
// takes its parent station's areas; one with its own rows uses only those.
//
// Which product wins. Among matching rules only those with the highest
// rule_priority count (an empty rule_priority is 0), whether or not their
// product is sold to the rider; this is literal, so a high-priority rule
// whose product the rider cannot buy makes the fare unknown rather than
// falling back to a lower priority. Among the remaining rules, the product
// sold to the rider's category and medium with the lowest price wins, ties
// going to the earlier line of fare_leg_rules.txt. Its rule's leg_group_id
// is the fare leg's group for transfers.
//
// Product rows. A fare_products.txt row with an empty rider_category_id is
// sold to every category. A row with an empty fare_media_id is read as
// "medium unknown": it applies to any medium, but a row naming the rider's
// medium is preferred. The most specific row wins: (category, medium), then
// (any category, medium) and (category, no medium), which rank alike (the
// cheaper wins: a concession's own row is not beaten by a medium's row for
// every category), then (any, no medium).
// A journey with no rider category is priced for the feed's default
// category (is_default_fare_category=1). GTFS allows one default per
// product, so a feed may mark several: each product is then priced for the
// default category among those it is sold to (two defaults on one product
// are refused, and so is a row sold to every category, rider_category_id
// empty, which makes every default eligible), and caps for any default
// category apply. A journey with no
// fare medium only matches rows with an empty fare_media_id.
//
// Time. Timeframes are matched on the local calendar day and wall-clock
// time of the fare event, in the stop_timezone of the event's stop (or of
// its parent station) when set, else the agency timezone; all agencies must
// share one timezone. start_time is inclusive and end_time exclusive, an
// empty pair is the whole day, and times above 24:00:00 are rejected.
// Overlapping timeframes of the same group and service are a load error.
// A leg with no departure (arrival) stop uses the agency timezone.
//
// Effective fare legs. Consecutive legs join when a fare_leg_join_rules.txt
// row matches their networks and either its from_stop_id/to_stop_id (a stop
// or its parent station) or, when those are empty, when the first leg ends
// at the station where the second starts. Chains of joins make one fare
// leg: departure area and time from its first leg, arrival from its last.
// If its legs are on different networks, only rules with an empty
// network_id can match it.
//
// Transfers. Between consecutive fare legs, fare_transfer_rules.txt is
// looked up by their leg groups, with the same "empty means every group not
// listed" fallback per field. Fare legs whose rule has no leg_group_id take
// part in no transfer. transfer_count counts consecutive transfers between
// the same pair of leg groups (from = to): a rule applies to transfers 1 ..
// transfer_count of such a run (-1: no limit); past it, no rule matches and
// the next leg pays its own fare, starting a new run. Where several rules
// match, the one with the smallest transfer_count at or above the current
// count wins, then the one adding least to the journey by its type (type 0
// its product, type 1 its product and the to-leg's fare, type 2 its
// product less the from-leg's fare it waives), then the earlier line.
// transfer_count on a rule whose groups differ is forbidden by the
// reference but found in real feeds: it is accepted and ignored. A missing
// transfer_count where the groups are equal is a load error.
// duration_limit is inclusive (a transfer exactly at the limit is allowed)
// and is measured between the validation events its duration_limit_type
// names, from the first fare leg of the run for repeated same-group
// transfers, otherwise from the transfer's from-leg. A transfer rule whose
// product is not sold to the rider's category and medium does not apply.
// Costs follow the reference's table: type 0 charges A + AB, type 1 A + AB
// + B, type 2 AB (the from-leg is waived only on the first transfer of a
// chain; later it is already part of the running total S). A journey
// without a matching transfer rule pays each fare leg.
//
// Unknown fares. If any fare leg matches no rule, or no product is sold to
// the rider, the journey's Fare has Known false, a zero Total and a Reason;
// it is never a zero fare. Unknown IDs in a journey (route, stop, network,
// category, medium) are errors, not unknown fares. Products of different
// currencies in one journey make the fare unknown. Settle charges a journey
// of unknown fare (held for review) leg by leg: each leg's own fare where
// a rule prices it alone, else its entry's maximum fare as a tap-in
// without tap-out, and nothing where the feed knows neither for any leg
// (Settlement.Fallback): an exit the rules of its entry's network do not
// reach, or at a stop the feed does not know yet, then takes back nothing
// of what the entry was charged.
//
// Area sets (not adopted). fare_leg_rules.contains_exactly_area_set_id with
// area_set_elements.txt (google/transit PR #483) is supported because a
// shared test feed uses it: such a rule matches only when the set of areas
// of all the stops of the (effective) leg's legs equals the set exactly.
// Only boarding and alighting stops are known, not intermediate ones.
//
// # Maximum fare (incomplete legs)
//
// A tap-in without a tap-out becomes an incomplete leg (Leg.Incomplete).
// It is charged the maximum fare: the highest price, for the rider's
// category and medium, that some completion of the leg could be charged:
// among the products of the rules that match its network, departure area
// and departure time, whatever their arrival area and arrival timeframe,
// leaving out every rule another beats on each arrival it matches, the
// arrival's stop taken in each set of areas the feed's stops are in: one
// matching there whenever it does, with a higher priority (sold to the
// rider or not) or the same priority and sold to the rider cheaper. The
// arrival's time is not enumerated: a rule with an arrival timeframe
// beats only rules with the same one. A tap-out without a tap-in is priced the same way from its
// arrival area and time, the departure side unconstrained. Incomplete legs
// join nothing and take part in no transfer. A journey's total is never
// below zero (transfer discounts larger than the legs make it free).
//
// # Fare capping: fare_caps.txt (Faregate extension)
//
// An optional file beside the feed:
//
//	fare_cap_id        ID, required, unique
//	rider_category_id  foreign ID, optional: empty caps every category
//	fare_media_id      foreign ID, optional: empty caps every medium
//	cap_period         enum, required: 0 fare day, 1 calendar week
//	                   (Monday to Sunday), 2 rolling 7 days
//	amount, currency   currency amount, required: the cap
//	day_start_time     local time, optional (default 00:00:00): when the
//	                   fare day begins, e.g. 04:30:00 for TfL's 04:30-04:29
//
// For example:
//
//	fare_cap_id,rider_category_id,fare_media_id,cap_period,amount,currency,day_start_time
//	daily,,contactless,0,8.10,GBP,04:30:00
//	weekly,,contactless,1,40.70,GBP,04:30:00
//	omny,,,2,34.00,USD,
//
// A journey counts in the window in which its first leg starts (agency
// local time; a calendar week starts on Monday at day_start_time). Capper
// charges each journey its fare or what is left under the tightest
// applicable cap, whichever is less (a partial charge at the threshold),
// and records the charge in every applicable window. So no window is ever
// charged more than its cap, and, for fare-day and calendar-week caps, the
// total of a window does not depend on the order the journeys arrive in.
// A rolling week opens at the first journey charged and lasts 7 × 24 h;
// rolling caps need journeys in time order (ErrOutOfOrder).
//
// # Apportionment
//
// Feed.Apportion splits an amount charged for a journey between the
// agencies of its legs (the route's agency_id; for a leg with no route,
// the agency of the reader that took it, Leg.AgencyID: a station gate's
// operator; with neither, the first agency) in proportion to what each leg would cost alone, priced
// as a one-leg journey for the same rider, medium and time. Legs whose
// standalone fare is unknown or negative weigh zero; if every leg weighs
// zero, each weighs one. SplitAmount does the split in integer minor units
// by the largest-remainder method (leftover units to the largest
// remainders, ties to the agency met first), so shares always add up to
// the amount exactly.
package fares
