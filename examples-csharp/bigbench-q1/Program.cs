// TPCx-BB Q1 on babelmr, in C# (Mono, base class library only): the top 100 pairs of items sold together
// in stores 10, 20, 33, 40, 50 and categories 1, 2, 3.
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
using System.IO;
using System.Text;
using System.Text.RegularExpressions;

static class Q1
{
    static readonly long[] Categories = { 1, 2, 3 };
    static readonly long[] Stores = { 10, 20, 33, 40, 50 };

    static string Output { get { return Environment.GetEnvironmentVariable("MR_OUTPUT") ?? "out.csv"; } }

    /// <summary>The stage's only input, or the input `name` of several (in_&lt;name&gt;.csv).</summary>
    static CsvReader Open(string name = null)
    {
        if (name == null) return new CsvReader(Environment.GetEnvironmentVariable("MR_INPUT") ?? "in.csv");
        string dir = Environment.GetEnvironmentVariable("MR_WORKDIR") ?? ".";
        return new CsvReader(Path.Combine(dir, "in_" + name + ".csv"));
    }

    /// <summary>A value of an integer column; false for an empty field (null).</summary>
    static bool TryLong(string text, out long value)
    {
        value = text.Length > 0 ? Long(text) : 0;
        return text.Length > 0;
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
        using (var csv = Open("item"))
        {
            int sk = csv.Column("i_item_sk"), category = csv.Column("i_category_id");
            var row = new List<string>();
            long item, id;
            while (csv.Read(row))
                if (TryLong(row[sk], out item) && TryLong(row[category], out id) && Array.IndexOf(Categories, id) >= 0)
                    items[item] = true;
        }
        var tickets = new Dictionary<long, List<long>>();
        using (var csv = Open("store_sales"))
        {
            int ticket = csv.Column("ss_ticket_number"), sk = csv.Column("ss_item_sk"), store = csv.Column("ss_store_sk");
            var row = new List<string>();
            long t, item, s;
            while (csv.Read(row))
                if (TryLong(row[store], out s) && Array.IndexOf(Stores, s) >= 0 && TryLong(row[sk], out item)
                    && items.ContainsKey(item) && TryLong(row[ticket], out t))
                    Add(tickets, t, item);
        }
        using (var csv = new CsvWriter(Output, "ss_ticket_number", "ss_item_sk"))
            foreach (KeyValuePair<long, List<long>> ticket in Distinct(tickets))
                foreach (long item in ticket.Value)
                    csv.Field(ticket.Key).Field(item).EndRow();
    }

    static void Pairs()
    {
        var tickets = new Dictionary<long, List<long>>();
        using (var csv = Open())
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
        using (var csv = new CsvWriter(Output, "item_sk_1", "item_sk_2", "cnt"))
            foreach (KeyValuePair<Pair, long> pc in counts)
                csv.Field(pc.Key.Item1).Field(pc.Key.Item2).Field(pc.Value).EndRow();
    }

    static void Count()
    {
        var counts = new Dictionary<Pair, long>();
        using (var csv = Open())
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
        using (var csv = new CsvWriter(Output, "item_sk_1", "item_sk_2", "cnt"))
            for (int i = 0; i < sorted.Count && i < 100; i++)
                csv.Field(sorted[i].Key.Item1).Field(sorted[i].Key.Item2).Field(sorted[i].Value).EndRow();
    }

    static int Main(string[] args)
    {
        string mode = args.Length > 0 ? args[args.Length - 1] : "";
        Action run;
        if (mode == "join") run = Join;
        else if (mode == "pairs") run = Pairs;
        else if (mode == "count") run = Count;
        else
        {
            Console.Error.WriteLine("usage: bigbench-q1.exe join|pairs|count");
            return 2;
        }
        if (Environment.GetEnvironmentVariable("MR_WARM") != null) Warm.Serve(run);  // started once per worker
        else run();
        return 0;
    }
}

/// <summary>Warm mode (MR_WARM set): runs the task once per line read from fd $MR_WARM_IN (a JSON object of the
/// task's MR_* variables, all strings) and answers each on fd $MR_WARM_OUT.</summary>
static class Warm
{
    public static void Serve(Action run)
    {
        var tasks = new StreamReader(new FileStream("/dev/fd/" + Environment.GetEnvironmentVariable("MR_WARM_IN"), FileMode.Open, FileAccess.Read));
        var replies = new StreamWriter(new FileStream("/dev/fd/" + Environment.GetEnvironmentVariable("MR_WARM_OUT"), FileMode.Open, FileAccess.Write));
        string line;
        while ((line = tasks.ReadLine()) != null)
        {
            foreach (Match m in Regex.Matches(line, "\"(MR_\\w+)\":\"((?:[^\"\\\\]|\\\\.)*)\""))
                Environment.SetEnvironmentVariable(m.Groups[1].Value, Regex.Unescape(m.Groups[2].Value));
            string error = null;
            try { Directory.SetCurrentDirectory(Environment.GetEnvironmentVariable("MR_WORKDIR")); run(); }
            catch (Exception e) { error = e.GetType().Name + ": " + e.Message; }
            Console.Out.Flush(); Console.Error.Flush();
            replies.WriteLine(error == null ? "{\"ok\": true}" : "{\"error\": \"" + Regex.Replace(error, "[\"\\\\\\p{Cc}]", " ") + "\"}");
            replies.Flush();
        }
    }
}

/// <summary>Reads RFC 4180 CSV with a header row: comma separated, fields quoted with " where needed, "" for
/// a quote inside a quoted field, line breaks inside quoted fields, records ending in \n or \r\n. An empty
/// field (babelmr's null) reads as "".</summary>
sealed class CsvReader : IDisposable
{
    readonly TextReader input;
    readonly char[] buffer = new char[1 << 16];
    readonly StringBuilder field = new StringBuilder();
    int pos, end;

    public readonly string[] Header;

    public CsvReader(string path)
    {
        input = new StreamReader(path, new UTF8Encoding(false), true, 1 << 16);
        var header = new List<string>();
        Header = Read(header) ? header.ToArray() : new string[0];
    }

    /// <summary>The index of a header column.</summary>
    public int Column(string name)
    {
        int i = Array.IndexOf(Header, name);
        if (i < 0 && Header.Length > 0)
            throw new FormatException("CSV input has no column '" + name + "'; it has " + string.Join(",", Header));
        return i;
    }

    bool Fill()
    {
        if (pos < end) return true;
        pos = 0;
        end = input.Read(buffer, 0, buffer.Length);
        return end > 0;
    }

    /// <summary>The next record's fields; false at the end of the input.</summary>
    public bool Read(List<string> fields)
    {
        fields.Clear();
        if (!Fill()) return false;
        while (true)
        {
            int stop = -1;
            if (!Fill()) fields.Add("");  // the input ends with an empty field after a comma
            else stop = buffer[pos] == '"' ? Quoted(fields) : Plain(fields);
            if (stop == ',') continue;
            if (stop == '\r' && Fill() && buffer[pos] == '\n') pos++;
            return true;
        }
    }

    // An unquoted field; returns the character that ended it (consumed), or -1 at the end of the input.
    int Plain(List<string> fields)
    {
        field.Length = 0;
        int start = pos;
        while (true)
        {
            if (pos == end)
            {
                field.Append(buffer, start, pos - start);
                if (!Fill())
                {
                    fields.Add(field.ToString());
                    return -1;
                }
                start = pos;
            }
            char c = buffer[pos];
            if (c == ',' || c == '\n' || c == '\r')
            {
                fields.Add(field.Length == 0 ? new string(buffer, start, pos - start)
                                             : field.Append(buffer, start, pos - start).ToString());
                pos++;
                return c;
            }
            pos++;
        }
    }

    // A quoted field, from its opening quote; returns what Plain returns.
    int Quoted(List<string> fields)
    {
        field.Length = 0;
        pos++;
        while (true)
        {
            if (!Fill()) throw new FormatException("CSV input ends inside a quoted field");
            int start = pos;
            while (pos < end && buffer[pos] != '"') pos++;
            field.Append(buffer, start, pos - start);
            if (pos == end) continue;
            pos++;
            if (Fill() && buffer[pos] == '"')
            {
                field.Append('"');
                pos++;
                continue;
            }
            fields.Add(field.ToString());
            if (!Fill()) return -1;
            char c = buffer[pos++];
            if (c == ',' || c == '\n' || c == '\r') return c;
            throw new FormatException("CSV input has '" + c + "' after the closing quote of a field");
        }
    }

    public void Dispose() { input.Dispose(); }
}

/// <summary>Writes CSV with a header row, quoting only fields that need it; numbers in the invariant
/// culture, doubles so that they read back as the same double.</summary>
sealed class CsvWriter : IDisposable
{
    static readonly char[] Special = { ',', '"', '\n', '\r' };
    readonly TextWriter output;
    bool first = true;

    public CsvWriter(string path, params string[] header)
    {
        output = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16);
        foreach (string name in header) Field(name);
        EndRow();
    }

    public CsvWriter Field(string value)
    {
        if (!first) output.Write(',');
        first = false;
        if (value == null) return this;
        if (value.IndexOfAny(Special) < 0)
        {
            output.Write(value);
        }
        else
        {
            output.Write('"');
            output.Write(value.Replace("\"", "\"\""));
            output.Write('"');
        }
        return this;
    }

    public CsvWriter Field(long value) { return Field(value.ToString(CultureInfo.InvariantCulture)); }

    public CsvWriter Field(double value)
    {
        // Mono's "R" misses the round trip for a few doubles: G17 always has enough digits.
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        if (double.Parse(text, CultureInfo.InvariantCulture) != value)
            text = value.ToString("G17", CultureInfo.InvariantCulture);
        return Field(text);
    }

    public void EndRow()
    {
        output.Write('\n');
        first = true;
    }

    public void Dispose() { output.Dispose(); }
}
