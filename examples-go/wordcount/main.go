// Word count on babelmr, in Go with the standard library and babelmr's helper package (base-image/lib/go).
//
//	map:    reads lines of text (CSV column "line") and writes how often each word occurs in them;
//	reduce: gets every partial count of its words and writes the totals.
//
// Both modes read and write CSV: babelmr writes the task's input to in.csv (MR_INPUT) and reads
// out.csv (MR_OUTPUT) back. A word is a run of the letters a-z after lower-casing.
package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"babelmr"
)

func main() {
	babelmr.Run(babelmr.Steps{"map": mapLines, "reduce": reduceCounts})
}

// mapLines counts the words of the column "line".
func mapLines() error {
	counts := map[string]int64{}
	var words int64
	err := babelmr.ReadCSV(babelmr.Input(), []string{"line"}, func(v []string) error {
		line := strings.ToLower(v[0]) // Unicode-aware, as DuckDB's lower(): 'K' (Kelvin) is 'k'
		for i := 0; i < len(line); {
			if !isLetter(line[i]) {
				i++
				continue
			}
			j := i + 1
			for j < len(line) && isLetter(line[j]) {
				j++
			}
			if word := line[i:j]; counts[word] > 0 {
				counts[word]++
			} else {
				counts[strings.Clone(word)] = 1 // a copy: the key must not keep the whole line alive
			}
			words++
			i = j
		}
		return nil
	})
	if err != nil {
		return err
	}
	babelmr.Counter("wordcount", "words", words)
	return writeCounts(counts)
}

// reduceCounts adds up the column "count" per "word".
func reduceCounts() error {
	counts := map[string]int64{}
	err := babelmr.ReadCSV(babelmr.Input(), []string{"word", "count"}, func(v []string) error {
		n, err := strconv.ParseInt(v[1], 10, 64)
		if err != nil {
			return fmt.Errorf("count %q: %w", v[1], err)
		}
		counts[v[0]] += n
		return nil
	})
	if err != nil {
		return err
	}
	return writeCounts(counts)
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' }

// writeCounts writes word,count rows sorted by word (a header row even when there are none).
func writeCounts(counts map[string]int64) error {
	words := make([]string, 0, len(counts))
	for w := range counts {
		words = append(words, w)
	}
	sort.Strings(words)
	out, err := babelmr.CreateCSV(babelmr.Output(), "word", "count")
	if err != nil {
		return err
	}
	defer out.Close()
	for _, word := range words {
		out.Write(word, counts[word])
	}
	babelmr.Counter("wordcount", "distinct_words", int64(len(words)))
	return out.Close()
}
