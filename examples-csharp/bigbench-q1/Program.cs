// TPCx-BB Q1 on babelmr, in C# (Mono, base class library only) with babelmr's helper
// (base-image/lib/csharp/Babelmr.cs): the top 100 pairs of items sold together in stores 10, 20, 33, 40, 50 and
// categories 1, 2, 3.
//
//   join:  a share of store_sales (in_store_sales.csv) and the whole item table (in_item.csv)
//          -> the distinct (ss_ticket_number, ss_item_sk) of the sales of those stores and categories;
//   pairs: all lines of some tickets (in.csv) -> every pair of distinct items of a ticket
//          (item_sk_1 < item_sk_2), counted (cnt) per pair;
//   count: all counts of some pairs (in.csv) -> the total per pair, kept when >= Q1_MIN_COUNT (default 50),
//          the top 100 by cnt desc, item_sk_1, item_sk_2.
//
// The mode is the last argument.

using System;
using System.Collections.Generic;
using System.Globalization;

static class Q1
{
    static readonly long[] Categories = { 1, 2, 3 };
    static readonly long[] Stores = { 10, 20, 33, 40, 50 };

    /// <summary>A value of an integer column; false for NULL.</summary>
    static bool TryLong(string text, out long value)
    {
        value = text != null ? Long(text) : 0;
        return text != null;
    }

    static long Long(string text) { return long.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture); }

    struct Pair : IEquatable<Pair>
    {
        public readonly long Item1, Item2;
        public Pair(long item1, long item2) { Item1 = item1; Item2 = item2; }
        public bool Equals(Pair other) { return Item1 == other.Item1 && Item2 == other.Item2; }
        public override bool Equals(object other) { return other is Pair && Equals((Pair)other); }
        public override int GetHashCode() { return (Item1 * 1000003L ^ Item2).GetHashCode(); }
    }

    /// <summary>Items per ticket, each list sorted and without duplicates.</summary>
    static Dictionary<long, List<long>> Distinct(Dictionary<long, List<long>> tickets)
    {
        foreach (List<long> items in tickets.Values)
        {
            items.Sort();
            int n = 0;
            for (int i = 0; i < items.Count; i++)
                if (i == 0 || items[i] != items[n - 1]) items[n++] = items[i];
            items.RemoveRange(n, items.Count - n);
        }
        return tickets;
    }

    static void Add<K>(Dictionary<K, List<long>> lists, K key, long value)
    {
        List<long> list;
        if (!lists.TryGetValue(key, out list)) lists.Add(key, list = new List<long>());
        list.Add(value);
    }

    static void Join()
    {
        var items = new Dictionary<long, bool>();  // the items of the categories
        using (var csv = new CsvReader(Babelmr.Input("item")))
        {
            int sk = csv.Column("i_item_sk"), category = csv.Column("i_category_id");
            var row = new List<string>();
            long item, id;
            while (csv.Read(row))
                if (TryLong(row[sk], out item) && TryLong(row[category], out id) && Array.IndexOf(Categories, id) >= 0)
                    items[item] = true;
        }
        var tickets = new Dictionary<long, List<long>>();
        using (var csv = new CsvReader(Babelmr.Input("store_sales")))
        {
            int ticket = csv.Column("ss_ticket_number"), sk = csv.Column("ss_item_sk"), store = csv.Column("ss_store_sk");
            var row = new List<string>();
            long t, item, s;
            while (csv.Read(row))
                if (TryLong(row[store], out s) && Array.IndexOf(Stores, s) >= 0 && TryLong(row[sk], out item)
                    && items.ContainsKey(item) && TryLong(row[ticket], out t))
                    Add(tickets, t, item);
        }
        using (var csv = new CsvWriter(Babelmr.Output, "ss_ticket_number", "ss_item_sk"))
            foreach (KeyValuePair<long, List<long>> ticket in Distinct(tickets))
                foreach (long item in ticket.Value)
                    csv.Field(ticket.Key).Field(item).EndRow();
    }

    static void Pairs()
    {
        var tickets = new Dictionary<long, List<long>>();
        using (var csv = new CsvReader())
        {
            int ticket = csv.Column("ss_ticket_number"), sk = csv.Column("ss_item_sk");
            var row = new List<string>();
            while (csv.Read(row))
                Add(tickets, Long(row[ticket]), Long(row[sk]));
        }
        var counts = new Dictionary<Pair, long>();
        foreach (List<long> items in Distinct(tickets).Values)
            for (int i = 0; i < items.Count; i++)
                for (int j = i + 1; j < items.Count; j++)
                {
                    var pair = new Pair(items[i], items[j]);
                    long n;
                    counts.TryGetValue(pair, out n);
                    counts[pair] = n + 1;
                }
        using (var csv = new CsvWriter(Babelmr.Output, "item_sk_1", "item_sk_2", "cnt"))
            foreach (KeyValuePair<Pair, long> pc in counts)
                csv.Field(pc.Key.Item1).Field(pc.Key.Item2).Field(pc.Value).EndRow();
    }

    static void Count()
    {
        var counts = new Dictionary<Pair, long>();
        using (var csv = new CsvReader())
        {
            int item1 = csv.Column("item_sk_1"), item2 = csv.Column("item_sk_2"), cnt = csv.Column("cnt");
            var row = new List<string>();
            while (csv.Read(row))
            {
                var pair = new Pair(Long(row[item1]), Long(row[item2]));
                long n;
                counts.TryGetValue(pair, out n);
                counts[pair] = n + Long(row[cnt]);
            }
        }
        long minCount = Long(Environment.GetEnvironmentVariable("Q1_MIN_COUNT") ?? "50");
        var sorted = new List<KeyValuePair<Pair, long>>();
        foreach (KeyValuePair<Pair, long> pc in counts)
            if (pc.Value >= minCount) sorted.Add(pc);
        sorted.Sort((a, b) =>
        {
            int c = b.Value.CompareTo(a.Value);
            if (c == 0) c = a.Key.Item1.CompareTo(b.Key.Item1);
            return c != 0 ? c : a.Key.Item2.CompareTo(b.Key.Item2);
        });
        using (var csv = new CsvWriter(Babelmr.Output, "item_sk_1", "item_sk_2", "cnt"))
            for (int i = 0; i < sorted.Count && i < 100; i++)
                csv.Field(sorted[i].Key.Item1).Field(sorted[i].Key.Item2).Field(sorted[i].Value).EndRow();
    }

    static int Main(string[] args)
    {
        return Babelmr.Run(args, new Dictionary<string, Action> { { "join", Join }, { "pairs", Pairs }, { "count", Count } });
    }
}
