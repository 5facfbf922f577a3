// TPC-H Q1 (pricing summary report) on babelmr, in C# (Mono, base class library only).
//
//   map:    a share of lineitem (in.csv) -> per (l_returnflag, l_linestatus), the sums and the row count
//           of the items shipped by 1998-09-02, added up exactly as decimals;
//   reduce: all partial sums of its groups (in.csv) -> Q1's totals and averages, sorted by the flags.
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
    const string ShippedBy = "1998-09-02";  // 1998-12-01 - 90 days; ISO dates compare like strings

    static string Input { get { return Environment.GetEnvironmentVariable("MR_INPUT") ?? "in.csv"; } }
    static string Output { get { return Environment.GetEnvironmentVariable("MR_OUTPUT") ?? "out.csv"; } }

    static readonly string[] PartialColumns =
        { "l_returnflag", "l_linestatus", "sum_qty", "sum_base_price", "sum_disc_price", "sum_charge", "sum_disc",
          "count_order" };

    static readonly string[] Q1Columns =
        { "l_returnflag", "l_linestatus", "sum_qty", "sum_base_price", "sum_disc_price", "sum_charge", "avg_qty",
          "avg_price", "avg_disc", "count_order" };

    /// <summary>The sums of one (l_returnflag, l_linestatus) group.</summary>
    sealed class Group
    {
        public string ReturnFlag, LineStatus;
        public decimal Qty, BasePrice, DiscPrice, Charge, Disc;  // map: exact sums of the decimal columns
        public double QtyD, BasePriceD, DiscPriceD, ChargeD, DiscD;  // reduce: sums of the partial sums
        public long Count;
    }

    static Group GroupOf(Dictionary<string, Group> groups, string returnFlag, string lineStatus)
    {
        string key = returnFlag + "\u0000" + lineStatus;
        Group g;
        if (!groups.TryGetValue(key, out g))
        {
            g = new Group { ReturnFlag = returnFlag, LineStatus = lineStatus };
            groups.Add(key, g);
        }
        return g;
    }

    static List<Group> Sorted(Dictionary<string, Group> groups)
    {
        var list = new List<Group>(groups.Values);
        list.Sort((a, b) =>
        {
            int c = string.CompareOrdinal(a.ReturnFlag, b.ReturnFlag);
            return c != 0 ? c : string.CompareOrdinal(a.LineStatus, b.LineStatus);
        });
        return list;
    }

    static decimal Decimal(string text) { return decimal.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture); }
    static double Double(string text) { return double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture); }
    static long Long(string text) { return long.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture); }

    static void MapLineitem()
    {
        var groups = new Dictionary<string, Group>(StringComparer.Ordinal);
        using (var csv = new CsvReader(Input))
        {
            int flag = csv.Column("l_returnflag"), status = csv.Column("l_linestatus"),
                quantity = csv.Column("l_quantity"), price = csv.Column("l_extendedprice"),
                discount = csv.Column("l_discount"), tax = csv.Column("l_tax"), shipdate = csv.Column("l_shipdate");
            var row = new List<string>();
            while (csv.Read(row))
            {
                if (string.CompareOrdinal(row[shipdate], ShippedBy) > 0) continue;
                Group g = GroupOf(groups, row[flag], row[status]);
                decimal p = Decimal(row[price]), d = Decimal(row[discount]);
                decimal discPrice = p * (1 - d);
                g.Qty += Decimal(row[quantity]);
                g.BasePrice += p;
                g.DiscPrice += discPrice;
                g.Charge += discPrice * (1 + Decimal(row[tax]));
                g.Disc += d;
                g.Count++;
            }
        }
        using (var csv = new CsvWriter(Output, PartialColumns))
            foreach (Group g in Sorted(groups))
                csv.Field(g.ReturnFlag).Field(g.LineStatus).Field((double)g.Qty).Field((double)g.BasePrice)
                   .Field((double)g.DiscPrice).Field((double)g.Charge).Field((double)g.Disc).Field(g.Count).EndRow();
    }

    static void ReducePartials()
    {
        var groups = new Dictionary<string, Group>(StringComparer.Ordinal);
        using (var csv = new CsvReader(Input))
        {
            int[] c = Array.ConvertAll(PartialColumns, csv.Column);
            var row = new List<string>();
            while (csv.Read(row))
            {
                Group g = GroupOf(groups, row[c[0]], row[c[1]]);
                g.QtyD += Double(row[c[2]]);
                g.BasePriceD += Double(row[c[3]]);
                g.DiscPriceD += Double(row[c[4]]);
                g.ChargeD += Double(row[c[5]]);
                g.DiscD += Double(row[c[6]]);
                g.Count += Long(row[c[7]]);
            }
        }
        using (var csv = new CsvWriter(Output, Q1Columns))
            foreach (Group g in Sorted(groups))
                csv.Field(g.ReturnFlag).Field(g.LineStatus).Field(g.QtyD).Field(g.BasePriceD).Field(g.DiscPriceD)
                   .Field(g.ChargeD).Field(g.QtyD / g.Count).Field(g.BasePriceD / g.Count).Field(g.DiscD / g.Count)
                   .Field(g.Count).EndRow();
    }

    static int Main(string[] args)
    {
        string mode = args.Length > 0 ? args[args.Length - 1] : "";
        Action run;
        if (mode == "map") run = MapLineitem;
        else if (mode == "reduce") run = ReducePartials;
        else
        {
            Console.Error.WriteLine("usage: tpch-q1.exe map|reduce");
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
