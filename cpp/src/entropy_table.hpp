// Private to entropy*.cpp: the frequency table (choice, serialisation, parsing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace laqcore::detail {

// A normalised table: freq[s] for every symbol of the alphabet, summing to 2^m.
struct EntropyTable {
    int m = 0;
    int alphabet_bits = 0;
    std::vector<std::uint32_t> freq;
};

// Histogram of count symbols (alphabet 2^8 slots; deterministic, parallel for large inputs).
std::vector<std::uint64_t> entropy_histogram(const std::uint8_t* symbols, std::size_t count);

// The table (precision, frequencies) minimising the estimated coded size of these counts;
// est_bits receives that estimate (table + data bits, excluding states and directory).
EntropyTable entropy_choose_table(const std::vector<std::uint64_t>& counts, int alphabet_bits,
                                  double& est_bits);

// Appends the table's bit stream (byte-padded) to out.
void entropy_write_table(const EntropyTable& table, std::vector<std::uint8_t>& out);

// Parses a table at data[pos..size) for precision m; advances pos past its padding. Throws
// std::invalid_argument for a malformed or truncated table.
EntropyTable entropy_read_table(const std::uint8_t* data, std::size_t size, std::size_t& pos, int m,
                                int alphabet_bits);

}  // namespace laqcore::detail
