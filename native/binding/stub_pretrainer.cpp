// Placeholder until the pretrainer binding lands (Pretrainer.cpp replaces this file).
#include "binding/register.h"
namespace ipclip::binding {
void registerPretrainer(Napi::Env, Napi::Object) {}
}  // namespace ipclip::binding
