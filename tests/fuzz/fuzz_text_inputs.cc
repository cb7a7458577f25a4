// Text files Tailor reads: the feature schema CSV (--schema), the tokens file
// (--auth_tokens_file), the quotas file (--tenant_quotas_file) and tailorctl's feedback CSV. Each
// either parses or is refused with a reason; none may crash. The first byte picks the parser. A
// schema that parses is also evolved to (--evolve_schema) from a fixed one, and a pair read
// across the change.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "client/feedback_csv.h"
#include "model/schema.h"
#include "model/schema_evolution.h"
#include "server/auth.h"
#include "server/quota.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto schema = tailor::model::FeatureSchema::FromCsv(text);
      if (!schema.ok() && schema.status().message().empty()) std::abort();
      if (!schema.ok()) break;
      const std::vector<tailor::model::SchemaVersion> versions = {tailor::model::FirstVersion(
          *tailor::model::FeatureSchema::FromCsv("name,mean,sd\nf0,0,1\nf1,1,2\nf2,0,0.5\n"))};
      auto next = tailor::model::NextVersion(versions, *schema);
      if (!next.ok()) {
        if (next.status().message().empty()) std::abort();
        break;
      }
      if (next->ids.size() != static_cast<size_t>(schema->dimension())) std::abort();
      (void)tailor::model::DescribeChange(versions[0], *next);
      const tailor::model::FeatureProjection projection(versions[0], *next);
      const std::vector<float> chosen = {1, 2, 3}, rejected = {3, 2, 1};
      const Eigen::VectorXd pair = projection.PairDifference(chosen, rejected);
      if (pair.size() != schema->dimension() || !pair.allFinite()) std::abort();
      break;
    }
    case 1: {
      auto tokens = tailor::server::Authenticator::ParseText(text, "tokens");
      if (!tokens.ok() && tokens.status().message().empty()) std::abort();
      break;
    }
    case 2: {
      std::vector<tailor::v1::FeedbackEvent> events;
      absl::Status parsed = tailor::client::ParseFeedbackCsv(text, "events.csv", events);
      if (!parsed.ok() && parsed.message().empty()) std::abort();
      break;
    }
    case 3: {
      auto quotas = tailor::server::TenantQuotas::ParseText(text, "quotas");
      if (!quotas.ok() && quotas.status().message().empty()) std::abort();
      if (quotas.ok()) {
        for (const auto& [tenant, quota] : *quotas) {
          if (!(quota.rate > 0) || !(quota.burst >= 1)) std::abort();  // NaN fails too
        }
      }
      break;
    }
  }
  return 0;
}
