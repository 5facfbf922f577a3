// TPCx-BB Q1 on babelmr, in Go with the standard library and babelmr's helper package (base-image/lib/go): the top
// 100 pairs of items sold together in given stores and categories.
//
//	join:  a share of store_sales joined with the whole item table -> (ss_ticket_number, ss_item_sk) of
//	       the sales in stores 10, 20, 33, 40, 50 of items in categories 1, 2, 3;
//	pairs: all lines of some tickets -> every pair of distinct items of a ticket (item_sk_1 < item_sk_2),
//	       counted (cnt) per pair;
//	count: all counts of some pairs -> the total per pair, kept when >= Q1_MIN_COUNT (default 50), the
//	       top 100 by cnt desc, item_sk_1, item_sk_2.
//
// Every mode reads and writes JSON Lines, one object per row. join has two inputs, whose paths are in
// MR_INPUTS (in_store_sales.jsonl and in_item.jsonl); pairs and count have one, MR_INPUT (in.jsonl).
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"

	"babelmr"
)

var (
	categories = set(1, 2, 3)
	stores     = set(10, 20, 33, 40, 50)
)

const top = 100

type pair struct{ item1, item2 int64 }

// The rows each mode reads and writes.
type (
	item struct {
		ItemSK     babelmr.NullInt `json:"i_item_sk"`
		CategoryID babelmr.NullInt `json:"i_category_id"`
	}
	sale struct {
		TicketNumber babelmr.NullInt `json:"ss_ticket_number"`
		ItemSK       babelmr.NullInt `json:"ss_item_sk"`
		StoreSK      babelmr.NullInt `json:"ss_store_sk"`
	}
	basket struct {
		TicketNumber int64 `json:"ss_ticket_number"`
		ItemSK       int64 `json:"ss_item_sk"`
	}
	pairCount struct {
		ItemSK1 int64 `json:"item_sk_1"`
		ItemSK2 int64 `json:"item_sk_2"`
		Cnt     int64 `json:"cnt"`
	}
)

func main() {
	babelmr.Run(babelmr.Steps{"join": join, "pairs": pairs, "count": count})
}

// join filters a share of store_sales on the stores and the item table on the categories, joins them
// on the item and writes the distinct (ss_ticket_number, ss_item_sk).
func join() error {
	wanted := map[int64]bool{} // i_item_sk of the items in the categories
	err := babelmr.ReadJSONL(babelmr.NamedInput("item"), func(i *item) error {
		if i.ItemSK.Valid && i.CategoryID.Valid && categories[i.CategoryID.Int64] {
			wanted[i.ItemSK.Int64] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	seen := map[basket]bool{}
	var baskets []basket
	err = babelmr.ReadJSONL(babelmr.NamedInput("store_sales"), func(s *sale) error {
		// a null store or item matches no filter or join; a null ticket would pair with no other line
		if !s.StoreSK.Valid || !stores[s.StoreSK.Int64] || !s.ItemSK.Valid || !wanted[s.ItemSK.Int64] || !s.TicketNumber.Valid {
			return nil
		}
		if b := (basket{s.TicketNumber.Int64, s.ItemSK.Int64}); !seen[b] {
			seen[b] = true
			baskets = append(baskets, b)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeRows(baskets)
}

// pairs counts, per pair of distinct items, the tickets of this task that hold both.
func pairs() error {
	tickets := map[int64]map[int64]bool{} // ticket -> its distinct items
	err := babelmr.ReadJSONL(babelmr.Input(), func(b *basket) error {
		items := tickets[b.TicketNumber]
		if items == nil {
			items = map[int64]bool{}
			tickets[b.TicketNumber] = items
		}
		items[b.ItemSK] = true
		return nil
	})
	if err != nil {
		return err
	}
	counts := map[pair]int64{}
	var sortedItems []int64
	for _, items := range tickets {
		sortedItems = sortedItems[:0]
		for i := range items {
			sortedItems = append(sortedItems, i)
		}
		sort.Slice(sortedItems, func(i, j int) bool { return sortedItems[i] < sortedItems[j] })
		for i, a := range sortedItems {
			for _, b := range sortedItems[i+1:] {
				counts[pair{a, b}]++
			}
		}
	}
	rows := make([]pairCount, 0, len(counts))
	for p, cnt := range counts {
		rows = append(rows, pairCount{p.item1, p.item2, cnt})
	}
	return writeRows(rows)
}

// count adds up the counts per pair and writes the top 100 pairs with a total >= Q1_MIN_COUNT.
func count() error {
	minCount := int64(50)
	if s := os.Getenv("Q1_MIN_COUNT"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("Q1_MIN_COUNT: %w", err)
		}
		minCount = n
	}
	totals := map[pair]int64{}
	err := babelmr.ReadJSONL(babelmr.Input(), func(c *pairCount) error {
		totals[pair{c.ItemSK1, c.ItemSK2}] += c.Cnt
		return nil
	})
	if err != nil {
		return err
	}
	var frequent []pairCount
	for p, cnt := range totals {
		if cnt >= minCount {
			frequent = append(frequent, pairCount{p.item1, p.item2, cnt})
		}
	}
	sort.Slice(frequent, func(i, j int) bool {
		a, b := frequent[i], frequent[j]
		if a.Cnt != b.Cnt {
			return a.Cnt > b.Cnt
		}
		if a.ItemSK1 != b.ItemSK1 {
			return a.ItemSK1 < b.ItemSK1
		}
		return a.ItemSK2 < b.ItemSK2
	})
	if len(frequent) > top {
		frequent = frequent[:top]
	}
	return writeRows(frequent)
}

// writeRows writes the rows to the output, one JSON object per line; no rows: an empty file.
func writeRows[T any](rows []T) error {
	out, err := babelmr.CreateJSONL(babelmr.Output())
	if err != nil {
		return err
	}
	defer out.Close()
	for i := range rows {
		out.Write(&rows[i])
	}
	return out.Close()
}

func set(values ...int64) map[int64]bool {
	s := map[int64]bool{}
	for _, v := range values {
		s[v] = true
	}
	return s
}
