// A user's learned state as stored (storage::v1::UserState) and back. Stored bytes are
// not trusted: a record that does not describe a usable posterior of the schema's dimension
// (another format, wrong sizes, non-finite values or values beyond 1e6 in magnitude,
// non-positive variances) reads as nothing, and the engine rebuilds that user from their
// history.
#ifndef TAILOR_ENGINE_USER_STATE_H_
#define TAILOR_ENGINE_USER_STATE_H_

#include <cstdint>
#include <optional>

#include "model/posterior.h"
#include "tailor/storage/v1/records.pb.h"

namespace tailor::engine {

storage::v1::UserState ToState(const model::Posterior& posterior, uint64_t count,
                               int64_t first_micros, int64_t last_micros,
                               double forget_half_life_pairs, uint32_t schema_version);

// nullopt if the record does not describe a usable posterior of dimension d in this format.
std::optional<model::Posterior> FromState(const storage::v1::UserState& state, int d);

}  // namespace tailor::engine

#endif  // TAILOR_ENGINE_USER_STATE_H_
