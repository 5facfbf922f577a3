// TPCx-BB Q1 on babelmr, in Go with the standard library only: the top 100 pairs of items sold
// together in given stores and categories.
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
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
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
		ItemSK     nullInt `json:"i_item_sk"`
		CategoryID nullInt `json:"i_category_id"`
	}
	sale struct {
		TicketNumber nullInt `json:"ss_ticket_number"`
		ItemSK       nullInt `json:"ss_item_sk"`
		StoreSK      nullInt `json:"ss_store_sk"`
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
	steps := map[string]func() error{"join": join, "pairs": pairs, "count": count}
	if len(os.Args) < 2 || steps[os.Args[len(os.Args)-1]] == nil {
		fail(fmt.Errorf("usage: %s join|pairs|count", os.Args[0]))
	}
	mode := os.Args[len(os.Args)-1] // babelmr appends the mode as the last argument
	run := func(mode string) error {
		if err := steps[mode](); err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		return nil
	}
	if os.Getenv("MR_WARM") != "" {
		serve(func() error { return run(mode) }) // started once per worker: tasks arrive on fd $MR_WARM_IN
		return
	}
	if err := run(mode); err != nil {
		fail(err)
	}
}

// serve is warm mode (MR_WARM set): it runs run() per task line read from fd $MR_WARM_IN (a JSON object of
// the task's MR_* variables) and answers each on fd $MR_WARM_OUT.
func serve(run func() error) {
	in, _ := strconv.Atoi(os.Getenv("MR_WARM_IN"))
	out, _ := strconv.Atoi(os.Getenv("MR_WARM_OUT"))
	tasks, replies := bufio.NewScanner(os.NewFile(uintptr(in), "tasks")), os.NewFile(uintptr(out), "replies")
	tasks.Buffer(make([]byte, 1<<16), 1<<26)
	for tasks.Scan() {
		var task map[string]string
		err := json.Unmarshal(tasks.Bytes(), &task)
		for k, v := range task {
			os.Setenv(k, v)
		}
		if err == nil {
			if err = os.Chdir(task["MR_WORKDIR"]); err == nil {
				err = run()
			}
		}
		reply := map[string]any{"ok": true}
		if err != nil {
			reply = map[string]any{"error": err.Error()}
		}
		line, _ := json.Marshal(reply)
		replies.Write(append(line, '\n'))
	}
}

// join filters a share of store_sales on the stores and the item table on the categories, joins them
// on the item and writes the distinct (ss_ticket_number, ss_item_sk).
func join() error {
	wanted := map[int64]bool{} // i_item_sk of the items in the categories
	err := readRows(input("item"), func(i *item) error {
		if i.ItemSK.valid && i.CategoryID.valid && categories[i.CategoryID.v] {
			wanted[i.ItemSK.v] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	seen := map[basket]bool{}
	var baskets []basket
	err = readRows(input("store_sales"), func(s *sale) error {
		// a null store or item matches no filter or join; a null ticket would pair with no other line
		if !s.StoreSK.valid || !stores[s.StoreSK.v] || !s.ItemSK.valid || !wanted[s.ItemSK.v] || !s.TicketNumber.valid {
			return nil
		}
		if b := (basket{s.TicketNumber.v, s.ItemSK.v}); !seen[b] {
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
	err := readRows(input(""), func(b *basket) error {
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
	err := readRows(input(""), func(c *pairCount) error {
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

// input is the path of the input `name` (MR_INPUTS) or, for "", of the stage's only input (MR_INPUT).
func input(name string) string {
	if name == "" {
		if path := os.Getenv("MR_INPUT"); path != "" {
			return path
		}
		return "in.jsonl"
	}
	var inputs map[string]string
	if err := json.Unmarshal([]byte(os.Getenv("MR_INPUTS")), &inputs); err == nil && inputs[name] != "" {
		return inputs[name]
	}
	return "in_" + name + ".jsonl"
}

// readRows decodes every line of the JSON Lines file at path into a new T and calls row with it.
func readRows[T any](path string, row func(*T) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	for n := 1; ; n++ {
		var r T
		if err := dec.Decode(&r); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s row %d: %w", path, n, err)
		}
		if err := row(&r); err != nil {
			return fmt.Errorf("%s row %d: %w", path, n, err)
		}
	}
}

// writeRows writes the rows to MR_OUTPUT (out.jsonl), one JSON object per line; no rows: an empty file.
func writeRows[T any](rows []T) error {
	path := os.Getenv("MR_OUTPUT")
	if path == "" {
		path = "out.jsonl"
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	for i := range rows {
		if err := enc.Encode(&rows[i]); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// nullInt is a JSON integer or null (valid false). It also takes an integral number written as a float,
// such as 47.0: babelmr hands int64 columns that contain nulls (ss_store_sk) to JSON Lines programs as
// floats. Integers beyond 2^53 written that way may have lost precision already, so they are refused.
type nullInt struct {
	v     int64
	valid bool
}

func (n *nullInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		*n = nullInt{}
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return fmt.Errorf("not an integer: %s", s)
		}
		v = int64(f)
	}
	*n = nullInt{v, true}
	return nil
}

func set(values ...int64) map[int64]bool {
	s := map[int64]bool{}
	for _, v := range values {
		s[v] = true
	}
	return s
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bigbench-q1:", err)
	os.Exit(1)
}
