// Word count on babelmr, in C# (Mono, base class library only) with babelmr's helper (base-image/lib/csharp/Babelmr.cs).
//
//   map:    in.csv (column `line`) -> out.csv `word,count`: how often each word occurs in this share
//   reduce: in.csv `word,count` (every partial count of this task's words) -> out.csv: the totals
//
// A word is a run of the letters a-z after lower-casing. The mode is the last argument.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

static class WordCount
{
    static void Add(Dictionary<string, long> counts, string word, long n)
    {
        long total;
        counts.TryGetValue(word, out total);
        counts[word] = total + n;
    }

    static Dictionary<string, long> MapLines()
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var word = new StringBuilder();
        using (var csv = new CsvReader())
        {
            int line = csv.Column("line");
            var row = new List<string>();
            while (csv.Read(row))
            {
                foreach (char ch in row[line] ?? "")  // null: a NULL line, no words
                {
                    char c = char.ToLowerInvariant(ch);
                    if (c >= 'a' && c <= 'z')
                    {
                        word.Append(c);
                    }
                    else if (word.Length > 0)
                    {
                        Add(counts, word.ToString(), 1);
                        word.Length = 0;
                    }
                }
                if (word.Length > 0)
                {
                    Add(counts, word.ToString(), 1);
                    word.Length = 0;
                }
            }
        }
        return counts;
    }

    static Dictionary<string, long> ReduceCounts()
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        using (var csv = new CsvReader())
        {
            int word = csv.Column("word"), count = csv.Column("count");
            var row = new List<string>();
            while (csv.Read(row))
                Add(counts, row[word], long.Parse(row[count], NumberStyles.Integer, CultureInfo.InvariantCulture));
        }
        return counts;
    }

    static int Main(string[] args)
    {
        return Babelmr.Run(args, new Dictionary<string, Action> { { "map", () => Write(MapLines()) },
                                                                 { "reduce", () => Write(ReduceCounts()) } });
    }

    static void Write(Dictionary<string, long> counts)
    {
        var words = new List<string>(counts.Keys);
        words.Sort(StringComparer.Ordinal);
        using (var csv = new CsvWriter(Babelmr.Output, "word", "count"))
            foreach (string w in words)
                csv.Field(w).Field(counts[w]).EndRow();
    }
}
