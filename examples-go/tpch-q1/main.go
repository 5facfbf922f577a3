// TPC-H Q1 (pricing summary report) on babelmr, in Go with the standard library and babelmr's helper
// package (base-image/lib/go).
//
//	map:    one share of lineitem -> per (l_returnflag, l_linestatus), the sums and the row count of
//	        the items shipped by 1998-09-02;
//	reduce: all partial sums of its groups -> the totals and averages of Q1, sorted by the two flags.
//
// Both modes read and write CSV: babelmr writes the task's input to in.csv (MR_INPUT), with a header
// row, decimals such as 28351.92 and dates such as 1996-03-13, and reads out.csv (MR_OUTPUT) back with
// the column types the job's "schema" declares. Sums are float64, as in the Python example.
package main

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"babelmr"
)

// shippedBy is DATE '1998-12-01' - INTERVAL '90' DAY.
var shippedBy = time.Date(1998, 12, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -90)

type flags struct{ returnFlag, lineStatus string }

// sums are the partial sums of one group: map's output, reduce's input.
type sums struct {
	qty, basePrice, discPrice, charge, disc float64
	count                                   int64
}

func (s *sums) add(t *sums) {
	s.qty += t.qty
	s.basePrice += t.basePrice
	s.discPrice += t.discPrice
	s.charge += t.charge
	s.disc += t.disc
	s.count += t.count
}

var partialColumns = []string{"l_returnflag", "l_linestatus", "sum_qty", "sum_base_price", "sum_disc_price",
	"sum_charge", "sum_disc", "count_order"}

func main() {
	babelmr.Run(babelmr.Steps{"map": mapLineitem, "reduce": reducePartials})
}

// mapLineitem pre-aggregates the items shipped by 1998-09-02 per pair of flags.
func mapLineitem() error {
	groups := map[flags]*sums{}
	shipped := map[string]bool{} // l_shipdate -> shipped by the cut-off (a few thousand distinct dates)
	err := readRows([]string{"l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount",
		"l_tax", "l_shipdate"}, func(v []string) error {
		ok, seen := shipped[v[6]]
		if !seen {
			date, err := time.Parse("2006-01-02", v[6])
			if err != nil {
				return fmt.Errorf("l_shipdate: %w", err)
			}
			ok = !date.After(shippedBy)
			shipped[strings.Clone(v[6])] = ok
		}
		if !ok {
			return nil
		}
		var n [4]float64 // quantity, extended price, discount, tax
		if err := parseFloats(v[2:6], n[:]); err != nil {
			return err
		}
		key := flags{v[0], v[1]}
		g := groups[key]
		if g == nil {
			key = flags{strings.Clone(v[0]), strings.Clone(v[1])} // v is reused for the next row
			g = &sums{}
			groups[key] = g
		}
		discPrice := n[1] * (1 - n[2])
		g.add(&sums{qty: n[0], basePrice: n[1], discPrice: discPrice, charge: discPrice * (1 + n[3]), disc: n[2],
			count: 1})
		return nil
	})
	if err != nil {
		return err
	}
	out, err := babelmr.CreateCSV(babelmr.Output(), partialColumns...)
	if err != nil {
		return err
	}
	defer out.Close()
	for _, key := range sortedKeys(groups) {
		g := groups[key]
		out.Write(key.returnFlag, key.lineStatus, g.qty, g.basePrice, g.discPrice, g.charge, g.disc, g.count)
	}
	return out.Close()
}

// reducePartials adds up the partial sums per pair of flags and derives the averages.
func reducePartials() error {
	groups := map[flags]*sums{}
	err := readRows(partialColumns, func(v []string) error {
		var n [5]float64
		if err := parseFloats(v[2:7], n[:]); err != nil {
			return err
		}
		count, err := strconv.ParseInt(v[7], 10, 64)
		if err != nil {
			return fmt.Errorf("count_order: %w", err)
		}
		key := flags{strings.Clone(v[0]), strings.Clone(v[1])}
		if groups[key] == nil {
			groups[key] = &sums{}
		}
		groups[key].add(&sums{n[0], n[1], n[2], n[3], n[4], count})
		return nil
	})
	if err != nil {
		return err
	}
	out, err := babelmr.CreateCSV(babelmr.Output(), "l_returnflag", "l_linestatus", "sum_qty", "sum_base_price",
		"sum_disc_price", "sum_charge", "avg_qty", "avg_price", "avg_disc", "count_order")
	if err != nil {
		return err
	}
	defer out.Close()
	for _, key := range sortedKeys(groups) {
		g := groups[key]
		if g.count == 0 {
			return errors.New("a group without rows: count_order is 0")
		}
		n := float64(g.count)
		out.Write(key.returnFlag, key.lineStatus, g.qty, g.basePrice, g.discPrice, g.charge, g.qty/n,
			g.basePrice/n, g.disc/n, g.count)
	}
	return out.Close()
}

// readRows reads the named columns of the input, refusing nulls: TPC-H declares these columns NOT NULL,
// and this program does not implement SQL's null semantics (sums and averages that skip nulls).
func readRows(columns []string, row func([]string) error) error {
	return babelmr.ReadCSV(babelmr.Input(), columns, func(v []string) error {
		for i, s := range v {
			if s == "" {
				return fmt.Errorf("%s is null", columns[i])
			}
		}
		return row(v)
	})
}

func parseFloats(fields []string, into []float64) error {
	for i, s := range fields {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		into[i] = v
	}
	return nil
}

func sortedKeys(groups map[flags]*sums) []flags {
	keys := make([]flags, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].returnFlag != keys[j].returnFlag {
			return keys[i].returnFlag < keys[j].returnFlag
		}
		return keys[i].lineStatus < keys[j].lineStatus
	})
	return keys
}
