# node-gyp build of the same addon that CMakeLists.txt builds with cmake-js (the default): build/Release/ipclip.node.
#   node-gyp rebuild                      (LIBTORCH=/path/to/libtorch for a non-system libtorch)
# It links the system libtorch (Debian libtorch-dev) unless LIBTORCH is set. For PyTorch's CUDA libtorch prefer the
# CMake build: TorchConfig.cmake supplies the exact compile flags (C++ ABI, CUDA libraries) that gyp cannot discover.
# Note: `node-gyp rebuild` replaces build/, where cmake-js also builds.
{
  "variables": {
    "torch%": "<!(node -p \"process.env.LIBTORCH || ''\")",
  },
  "targets": [
    {
      "target_name": "ipclip",
      "sources": [
        "<!@(node -p \"['common','clip','ipclip','pretrain','binding'].flatMap((d) => { try { return require('fs').readdirSync('native/' + d).filter((f) => f.endsWith('.cpp')).sort().map((f) => 'native/' + d + '/' + f); } catch { return []; } }).join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native",
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++1y", "-std=gnu++17"],
      # Every file sees the libtorch headers of native/common/torch_pch.h, as in the CMake build (which precompiles
      # and force-includes it).
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O3", "-Wno-unused-parameter",
                    "-include", "<(module_root_dir)/native/common/torch_pch.h"],
      "conditions": [
        ["torch==''", {
          "include_dirs": ["/usr/include", "/usr/include/torch/csrc/api/include"],
          "libraries": ["-ltorch", "-ltorch_cpu", "-lc10"],
        }, {
          "include_dirs": ["<(torch)/include", "<(torch)/include/torch/csrc/api/include"],
          "libraries": ["-L<(torch)/lib", "-Wl,-rpath,<(torch)/lib", "-ltorch", "-ltorch_cpu", "-lc10"],
        }],
        ["OS=='mac'", {
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "GCC_ENABLE_CPP_RTTI": "YES",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "MACOSX_DEPLOYMENT_TARGET": "11.0",
          },
        }],
      ],
    },
  ],
}
