// Placeholders until the prompt and pretrainer bindings land (they replace these definitions).
#include "binding/register.h"
namespace ipclip::binding {
void registerPrompt(Napi::Env, Napi::Object) {}
void registerPretrainer(Napi::Env, Napi::Object) {}
}  // namespace ipclip::binding
