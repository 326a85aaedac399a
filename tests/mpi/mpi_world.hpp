#pragma once
#include "dist/world.hpp"
extern titan::dist::World* g_world;
