// Placeholder until the prompt binding lands (PromptModel.cpp replaces this file).
#include "binding/register.h"
namespace ipclip::binding {
void registerPrompt(Napi::Env, Napi::Object) {}
}  // namespace ipclip::binding
